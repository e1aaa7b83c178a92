// mod_rewrite's prg: protocol: Apache writes "key\n" and blocks, under a server-wide lock, until it has read
// one line back. So: exactly one answer line per input line, in input order, written as soon as it is known.
//
// Every answer names the key it answers and starts with ANSWER_MARK: "#alice=alpha", or "#alice=" when there
// is no value. mod_rewrite never ties the line it reads to the key it wrote: when a worker dies between writing
// its key and reading the answer, that answer stays in the shared pipe and the NEXT lookup, for another user,
// would read it; and mod_rewrite reads an answer one byte per read(2), so a worker killed mid-read leaves the
// TAIL of a line ("ce=tenant1" of "#alice=tenant1") that would name another key. The generated rules
// (src/apache/render/keyed-routing.ts) accept an answer only when it is "#" + the key just asked + "=": a tail
// never starts with the mark (no key or value holds "#"), a stale answer names another key. Every line the
// rules write is answered exactly once, so a lookup never waits for a line that will not come.
export type MapAnswer = string | null;

export const ANSWER_MARK = '#';

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

export interface MapIo {
  // Fills the buffer from the start with what is available (blocking until something is); 0 at end of input.
  read(buffer: Buffer): number;
  // Writes every byte of the text, latin1, before returning.
  write(text: string): void;
}

export interface RewriteMapLoopOptions {
  // Longer lines are answered NULL (without their key) and not held in memory (a key is a name of at most a
  // few hundred bytes; anything longer is hostile or broken).
  maxLineBytes?: number;
  readBufferBytes?: number;
}

// The hot loop: read what Apache wrote, answer every complete line in order, write the answers of one read
// with one write, block in read again. Nothing here yields to an event loop: a prg: lookup costs one read(2)
// and one write(2), which is what lets a Node map keep up with a minimal Python one (an event-loop wake-up per
// line cost more than the lookup). answerKey is synchronous: whatever waiting a miss needs happens inside it.
// Returns at end of input, after answering an unterminated last line (the peer may be waiting for it).
export function serveRewriteMapLoop(io: MapIo, answerKey: (key: string) => MapAnswer, options: RewriteMapLoopOptions = {}): void {
  const maxLineBytes = options.maxLineBytes ?? 4096;
  const buffer = Buffer.allocUnsafe(options.readBufferBytes ?? 65_536);
  // The start of a line that spans reads, copied out of the reused buffer; past the limit only its length is
  // kept, so an overlong line costs no memory however long it grows.
  let partial: Buffer[] = [];
  let partialBytes = 0;

  const answer = (key: string): string => {
    try {
      return formatAnswer(key, answerKey(key));
    } catch {
      return formatAnswer(key, null);
    }
  };
  const keep = (bytes: Buffer) => {
    if (partialBytes + bytes.length <= maxLineBytes) partial.push(Buffer.from(bytes));
    else partial = [];
    partialBytes += bytes.length;
  };
  const answerPartial = (): string => {
    const line = partialBytes > maxLineBytes ? OVERLONG_ANSWER : answer(Buffer.concat(partial).toString('latin1'));
    partial = [];
    partialBytes = 0;
    return line;
  };

  for (;;) {
    const length = io.read(buffer);
    if (length === 0) break;
    const chunk = length === buffer.length ? buffer : buffer.subarray(0, length);
    let out = '';
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      if (partialBytes === 0) {
        out += newline - start > maxLineBytes ? OVERLONG_ANSWER : answer(chunk.toString('latin1', start, newline));
      } else {
        keep(chunk.subarray(start, newline));
        out += answerPartial();
      }
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < length) keep(chunk.subarray(start));
    if (out !== '') io.write(out);
  }
  if (partialBytes > 0) io.write(answerPartial());
}
