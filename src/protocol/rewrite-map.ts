import type { Readable, Writable } from 'node:stream';

// mod_rewrite's prg: protocol: Apache writes "key\n" and blocks, under a server-wide lock, until it has read
// one line back. So: exactly one answer line per input line, in input order, written as soon as it is known.
//
// Every answer names the key it answers and starts with ANSWER_MARK: "#alice=alpha", or "#alice=" when there
// is no value. mod_rewrite never ties the line it reads to the key it wrote: when a worker dies between writing
// its key and reading the answer, that answer stays in the shared pipe and the NEXT lookup, for another user,
// would read it; and mod_rewrite reads an answer one byte per read(2), so a worker killed mid-read leaves the
// TAIL of a line ("ce=tenant1" of "#alice=tenant1") that would name another key. The generated rules
// (src/apache/render.ts keyedRouting) accept an answer only when it is "#" + the key just asked + "=": a tail
// never starts with the mark (no key or value holds "#"), a stale answer names another key. Every line the
// rules write is answered exactly once, so a lookup never waits for a line that will not come.
export type MapAnswer = string | null;

export const ANSWER_MARK = '#';
export type AnswerKey = (key: string) => MapAnswer | Promise<MapAnswer>;

export interface RewriteMapStreamOptions {
  // Longer lines are answered NULL (without their key) and not held in memory (a key is a name of at most a few hundred
  // bytes; anything longer is hostile or broken).
  maxLineBytes?: number;
  // Input is paused while this many answers wait, so a peer that writes without reading cannot grow memory.
  maxPendingAnswers?: number;
}

interface PendingAnswer {
  line?: string;
}

const NEWLINE = 0x0a;

// Answers are single lines by construction, but the store is the operator's: never let a stored value break
// the one-line-per-key framing. The key is echoed byte for byte (latin1 in, latin1 out). A value with a
// character above U+00FF has no latin1 form (Node writes only its low byte: U+010A would become "\n"), so it
// is no value either.
// A value holding the mark is no value too, so a line's only "#" is its first byte.
export function formatAnswer(key: string, answer: MapAnswer): string {
  if (answer === null || /[\r\n#\u0100-\uffff]/.test(answer)) return `${ANSWER_MARK}${key}=\n`;
  return `${ANSWER_MARK}${key}=${answer}\n`;
}

// A line too long to hold is answered without its key (and without the mark): it can never match the key the
// rules asked with.
const OVERLONG_ANSWER = 'NULL\n';

// Splitting is done here on bytes rather than with split2: split2 fails the whole stream when a line passes its
// maxLength, and one hostile line must cost one NULL answer, not the map. Keys are decoded as latin1 so every
// byte maps to one character and non-ASCII input simply fails name validation.
export function serveRewriteMap(
  input: Readable,
  output: Writable,
  answerKey: AnswerKey,
  options: RewriteMapStreamOptions = {},
): Promise<void> {
  const maxLineBytes = options.maxLineBytes ?? 4096;
  const maxPending = options.maxPendingAnswers ?? 1024;
  const pending: PendingAnswer[] = [];
  let partial: Buffer[] = [];
  let partialBytes = 0;
  let overlong = false;
  let out = '';
  let ended = false;
  let waitingForDrain = false;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));

  const flush = () => {
    if (out === '') return;
    // latin1 both ways: a key is echoed byte for byte whatever it holds.
    const writable = output.write(out, 'latin1');
    out = '';
    if (!writable) {
      input.pause();
      // Whoever paused the input, a full output must always lead back to resumeIfRoom.
      if (!waitingForDrain) {
        waitingForDrain = true;
        output.once('drain', () => {
          waitingForDrain = false;
          resumeIfRoom();
        });
      }
    }
  };

  const maybeFinish = () => {
    if (ended && pending.length === 0) {
      flush();
      finish();
    }
  };

  function resumeIfRoom() {
    if (input.isPaused() && pending.length < maxPending && !output.writableNeedDrain && !ended) input.resume();
  }

  const drainReady = () => {
    while (pending.length > 0 && pending[0]!.line !== undefined) out += pending.shift()!.line;
    flush();
    resumeIfRoom();
    maybeFinish();
  };

  const answerLine = (key: string | null) => {
    let answer: MapAnswer | Promise<MapAnswer> = null;
    try {
      if (key !== null) answer = answerKey(key);
    } catch {
      answer = null;
    }
    const line = (value: MapAnswer) => (key === null ? OVERLONG_ANSWER : formatAnswer(key, value));
    if (pending.length === 0 && (answer === null || typeof answer === 'string')) {
      out += line(answer);
      return;
    }
    const slot: PendingAnswer = {};
    pending.push(slot);
    if (answer === null || typeof answer === 'string') {
      slot.line = line(answer);
      return;
    }
    answer.then(
      (value) => {
        slot.line = line(value);
        drainReady();
      },
      () => {
        slot.line = line(null);
        drainReady();
      },
    );
    if (pending.length >= maxPending) input.pause();
  };

  const endLine = (tail: Buffer) => {
    if (overlong || partialBytes + tail.length > maxLineBytes) {
      answerLine(null);
    } else {
      const bytes = partialBytes === 0 ? tail : Buffer.concat([...partial, tail]);
      answerLine(bytes.toString('latin1'));
    }
    partial = [];
    partialBytes = 0;
    overlong = false;
  };

  input.on('data', (chunk: Buffer) => {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE, start);
    while (newline !== -1) {
      endLine(chunk.subarray(start, newline));
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (overlong || partialBytes + rest.length > maxLineBytes) {
        overlong = true;
        partial = [];
      } else {
        partial.push(rest);
      }
      partialBytes += rest.length;
    }
    drainReady();
  });

  input.on('end', () => {
    // A last line without its newline still gets its answer: the peer may be waiting for it.
    if (partialBytes > 0 || overlong) endLine(Buffer.alloc(0));
    ended = true;
    drainReady();
  });

  input.on('error', () => {
    ended = true;
    drainReady();
  });

  return done;
}
