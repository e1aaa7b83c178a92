// The map's answering thread (src/lookup/map-lookup.ts) against a store side played by the test on the other end of
// a real MessageChannel and shared signal, as store-thread.ts plays it: answers cached from 'fresh' events, changes
// and reconnections applied to that copy as the resolver applies them, misses asked and waited for until the
// deadline, then the stale answer or "unavailable".
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createMapLookup, postStoreEvent, type LookupRequest, type StoreEvent, type StoreLink } from '../../src/lookup/map-lookup.js';
import { UNAVAILABLE } from '../../src/lookup/resolver.js';

let ports: MessagePort[] = [];
afterEach(() => {
  for (const port of ports) port.close();
  ports = [];
});

function link(deadlineMs = 20) {
  const { port1, port2 } = new MessageChannel();
  ports.push(port1, port2);
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const store: StoreLink = { port: port2, signal };
  const lookup = createMapLookup('group', { link: { port: port1, signal }, max: 100, ttlMs: 60_000, deadlineMs });
  const post = (event: StoreEvent) => postStoreEvent(store, event);
  // What the answering thread asked the store side, in order.
  const asked = () => {
    const keys: string[] = [];
    for (let m = receiveMessageOnPort(port2); m !== undefined; m = receiveMessageOnPort(port2)) keys.push((m.message as LookupRequest).key);
    return keys;
  };
  return { lookup, post, asked };
}

describe('the map answering thread', () => {
  it('answers from the answers the store side sent, asking nothing', () => {
    const { lookup, post, asked } = link();
    post({ type: 'fresh', key: 'alice', value: 'alpha' });
    post({ type: 'fresh', key: 'dave', value: null });
    expect(lookup('alice')).toBe('alpha');
    expect(lookup('dave')).toBeNull();
    expect(asked()).toEqual([]);
  });

  it('refuses a key no user can have without asking', () => {
    const { lookup, asked } = link();
    expect(lookup('bad key')).toBeNull();
    expect(lookup('')).toBeNull();
    expect(asked()).toEqual([]);
  });

  it('asks on a miss, waits, and takes the answer to its own request (a store side in a thread of its own)', async () => {
    const { port1, port2 } = new MessageChannel();
    ports.push(port1);
    const signal = new Int32Array(new SharedArrayBuffer(4));
    // Answers every request late, first with an answer to a request nobody made, then with its own and a 'fresh'.
    const store = new Worker(
      `const { workerData } = require('node:worker_threads');
       const { port, signal } = workerData;
       const post = (event) => { port.postMessage(event); Atomics.add(signal, 0, 1); Atomics.notify(signal, 0); };
       port.on('message', ({ id, key }) => setTimeout(() => {
         post({ type: 'answer', id: id + 100, value: 'wrong' });
         post({ type: 'fresh', key, value: 'alpha' });
         post({ type: 'answer', id, value: 'alpha' });
       }, 50));`,
      { eval: true, workerData: { port: port2, signal }, transferList: [port2] },
    );
    try {
      const lookup = createMapLookup('group', { link: { port: port1, signal }, max: 100, ttlMs: 60_000, deadlineMs: 5_000 });
      expect(lookup('alice')).toBe('alpha');
      // Cached from the 'fresh' that came with it.
      expect(lookup('alice')).toBe('alpha');
    } finally {
      await store.terminate();
    }
  });

  it('without an answer in time: "unavailable" (our 503), never no value (the 403 of a user without a group)', () => {
    const { lookup, asked } = link(20);
    expect(lookup('alice')).toBe(UNAVAILABLE);
    expect(asked()).toEqual(['alice']);
  });

  it("drops the user's answer on a change of that user, and a group's answers and the no-answers on a change of the group", () => {
    const { lookup, post, asked } = link(20);
    post({ type: 'fresh', key: 'alice', value: 'alpha' });
    post({ type: 'fresh', key: 'bob', value: 'beta' });
    post({ type: 'fresh', key: 'carol', value: 'alpha' });
    post({ type: 'fresh', key: 'dave', value: null });
    post({ type: 'change', payload: 'u:bob' });
    post({ type: 'change', payload: 'g:alpha' });
    // Gone entirely (not kept stale): asked again, and with no answer in time, unavailable.
    expect(lookup('alice')).toBe(UNAVAILABLE);
    expect(lookup('bob')).toBe(UNAVAILABLE);
    expect(lookup('dave')).toBe(UNAVAILABLE);
    expect(asked()).toEqual(['alice', 'bob', 'dave']);
    post({ type: 'fresh', key: 'erin', value: 'beta' });
    post({ type: 'change', payload: 'g:alpha' });
    expect(lookup('erin')).toBe('beta');
    expect(asked()).toEqual([]);
  });

  it('after a reconnection (changes may have been missed) asks again, and serves the old answer while the store is silent', () => {
    const { lookup, post, asked } = link(20);
    post({ type: 'fresh', key: 'alice', value: 'alpha' });
    post({ type: 'listening' });
    // Another user's miss takes in the reconnection and waits out its deadline: alice's entry is stale by then.
    expect(lookup('bob')).toBe(UNAVAILABLE);
    expect(lookup('alice')).toBe('alpha');
    expect(asked()).toEqual(['bob', 'alice']);
  });
});
