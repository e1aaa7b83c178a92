// The FastCGI 1.0 wire format, the subset an application (the server side of the socket) needs: record
// framing, name-value pairs, and the bodies of BEGIN_REQUEST, END_REQUEST and UNKNOWN_TYPE.
//
//   record = version(1) type(1) requestId(2) contentLength(2) paddingLength(1) reserved(1) content padding
//   name-value pair = nameLength valueLength name value, each length 1 byte (< 128) or 4 bytes with the top
//   bit set (31-bit length).
// All integers are big-endian. Nothing here allocates more than one record's worth of memory for a record.

export const FCGI_VERSION_1 = 1;
export const FCGI_HEADER_LEN = 8;
export const FCGI_MAX_CONTENT_LEN = 0xffff;
export const FCGI_NULL_REQUEST_ID = 0;

export const RecordType = {
  BeginRequest: 1,
  AbortRequest: 2,
  EndRequest: 3,
  Params: 4,
  Stdin: 5,
  Stdout: 6,
  Stderr: 7,
  Data: 8,
  GetValues: 9,
  GetValuesResult: 10,
  UnknownType: 11,
} as const;

export const Role = { Responder: 1, Authorizer: 2, Filter: 3 } as const;

export const ProtocolStatus = { RequestComplete: 0, CantMpxConn: 1, Overloaded: 2, UnknownRole: 3 } as const;

// FCGI_BEGIN_REQUEST flags.
export const FCGI_KEEP_CONN = 1;

export interface FastCgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

export class FastCgiProtocolError extends Error {}

export function encodeRecord(type: number, requestId: number, content: Buffer = Buffer.alloc(0)): Buffer {
  if (content.length > FCGI_MAX_CONTENT_LEN)
    throw new RangeError(`record content of ${content.length} bytes exceeds ${FCGI_MAX_CONTENT_LEN}`);
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffff) throw new RangeError(`bad request id ${requestId}`);
  // Pad to a multiple of 8, as the specification recommends.
  const padding = (8 - (content.length % 8)) % 8;
  const record = Buffer.alloc(FCGI_HEADER_LEN + content.length + padding);
  record.writeUInt8(FCGI_VERSION_1, 0);
  record.writeUInt8(type, 1);
  record.writeUInt16BE(requestId, 2);
  record.writeUInt16BE(content.length, 4);
  record.writeUInt8(padding, 6);
  content.copy(record, FCGI_HEADER_LEN);
  return record;
}

// A stream (STDOUT, STDERR, PARAMS) as records of at most 65535 bytes each, followed by the empty record that
// ends the stream.
export function encodeStream(type: number, requestId: number, data: Buffer): Buffer[] {
  const records: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += FCGI_MAX_CONTENT_LEN) {
    records.push(encodeRecord(type, requestId, data.subarray(offset, offset + FCGI_MAX_CONTENT_LEN)));
  }
  records.push(encodeRecord(type, requestId));
  return records;
}

// A whole answer in one buffer: the STDOUT stream as encodeStream gives it, then END_REQUEST. One allocation
// from Buffer's pool, where the records one by one took an ArrayBuffer each: a check answers once.
export function encodeAnswer(requestId: number, stdout: Buffer, appStatus: number, protocolStatus: number): Buffer {
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffff) throw new RangeError(`bad request id ${requestId}`);
  const padded = (length: number) => length + ((8 - (length % 8)) % 8);
  let size = FCGI_HEADER_LEN + FCGI_HEADER_LEN + 8;
  for (let offset = 0; offset < stdout.length; offset += FCGI_MAX_CONTENT_LEN) {
    size += FCGI_HEADER_LEN + padded(Math.min(FCGI_MAX_CONTENT_LEN, stdout.length - offset));
  }
  const out = Buffer.allocUnsafe(size).fill(0);
  const header = (at: number, type: number, length: number) => {
    out[at] = FCGI_VERSION_1;
    out[at + 1] = type;
    out.writeUInt16BE(requestId, at + 2);
    out.writeUInt16BE(length, at + 4);
    out[at + 6] = padded(length) - length;
    return at + FCGI_HEADER_LEN;
  };
  let at = 0;
  for (let offset = 0; offset < stdout.length; offset += FCGI_MAX_CONTENT_LEN) {
    const length = Math.min(FCGI_MAX_CONTENT_LEN, stdout.length - offset);
    at = header(at, RecordType.Stdout, length);
    stdout.copy(out, at, offset, offset + length);
    at += padded(length);
  }
  at = header(at, RecordType.Stdout, 0);
  at = header(at, RecordType.EndRequest, 8);
  out.writeUInt32BE(appStatus >>> 0, at);
  out[at + 4] = protocolStatus;
  return out;
}

export interface BeginRequestBody {
  role: number;
  flags: number;
}

export function encodeBeginRequest(requestId: number, role: number, flags: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body.writeUInt8(flags, 2);
  return encodeRecord(RecordType.BeginRequest, requestId, body);
}

export function decodeBeginRequest(content: Buffer): BeginRequestBody {
  if (content.length !== 8) throw new FastCgiProtocolError(`BEGIN_REQUEST body is ${content.length} bytes, not 8`);
  return { role: content.readUInt16BE(0), flags: content.readUInt8(2) };
}

export function encodeEndRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body.writeUInt8(protocolStatus, 4);
  return encodeRecord(RecordType.EndRequest, requestId, body);
}

export function decodeEndRequest(content: Buffer): { appStatus: number; protocolStatus: number } {
  if (content.length !== 8) throw new FastCgiProtocolError(`END_REQUEST body is ${content.length} bytes, not 8`);
  return { appStatus: content.readUInt32BE(0), protocolStatus: content.readUInt8(4) };
}

export function encodeUnknownType(type: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt8(type, 0);
  return encodeRecord(RecordType.UnknownType, FCGI_NULL_REQUEST_ID, body);
}

const MAX_PAIR_LENGTH = 0x7fffffff;

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  if (length > MAX_PAIR_LENGTH) throw new RangeError(`name or value of ${length} bytes is too long`);
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE((length | 0x80000000) >>> 0, 0);
  return bytes;
}

// Names and values are bytes on the wire; strings are written as UTF-8 (Apache passes bytes through as they
// came, and the codec reads them back as latin1 so no byte is lost or replaced).
export function encodeNameValuePairs(pairs: Iterable<readonly [string | Buffer, string | Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) {
    const n = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    parts.push(encodeLength(n.length), encodeLength(v.length), n, v);
  }
  return Buffer.concat(parts);
}

export interface DecodeLimits {
  maxPairs: number;
}

// Walks a complete PARAMS stream (all its records concatenated), giving each pair's offsets. A pair whose
// lengths run past the end, or more pairs than allowed, is a protocol error.
function scanNameValuePairs(
  data: Buffer,
  limits: DecodeLimits,
  pair: (nameStart: number, nameLength: number, valueStart: number, valueLength: number) => void,
): void {
  let offset = 0;
  let count = 0;
  const readLength = (): number => {
    if (offset >= data.length) throw new FastCgiProtocolError('name-value pair truncated in its length');
    const first = data[offset]!;
    if ((first & 0x80) === 0) {
      offset += 1;
      return first;
    }
    if (offset + 4 > data.length) throw new FastCgiProtocolError('name-value pair truncated in a 4-byte length');
    const length = data.readUInt32BE(offset) & 0x7fffffff;
    offset += 4;
    return length;
  };
  while (offset < data.length) {
    if (count >= limits.maxPairs) throw new FastCgiProtocolError(`more than ${limits.maxPairs} name-value pairs`);
    count++;
    const nameLength = readLength();
    const valueLength = readLength();
    if (nameLength > data.length - offset || valueLength > data.length - offset - nameLength) {
      throw new FastCgiProtocolError('name-value pair runs past the end of the stream');
    }
    pair(offset, nameLength, offset + nameLength, valueLength);
    offset += nameLength + valueLength;
  }
}

// Names and values are returned as latin1 strings — one character per byte — so the caller decides how to
// read them (see `utf8`).
export function decodeNameValuePairs(data: Buffer, limits: DecodeLimits = { maxPairs: 1_000 }): Map<string, string> {
  const pairs = new Map<string, string>();
  scanNameValuePairs(data, limits, (nameStart, nameLength, valueStart, valueLength) =>
    pairs.set(data.toString('latin1', nameStart, nameStart + nameLength), data.toString('latin1', valueStart, valueStart + valueLength)),
  );
  return pairs;
}

// What a handler reads of a request's parameters.
export interface NameValueLookup {
  get(name: string): string | undefined;
}

// A PARAMS stream checked whole, but decoded only where asked: Apache sends ~30 variables and an authorizer
// reads five, so turning all of them into strings was most of the cost of reading a request. `get` answers
// as decodeNameValuePairs' Map would (latin1, the last of repeated names).
export class NameValueIndex implements NameValueLookup {
  // nameStart, nameLength, valueStart, valueLength for each pair.
  private readonly offsets: number[] = [];

  constructor(
    private readonly data: Buffer,
    limits: DecodeLimits = { maxPairs: 1_000 },
  ) {
    scanNameValuePairs(data, limits, (nameStart, nameLength, valueStart, valueLength) =>
      this.offsets.push(nameStart, nameLength, valueStart, valueLength),
    );
  }

  get(name: string): string | undefined {
    const { data, offsets } = this;
    for (let i = offsets.length - 4; i >= 0; i -= 4) {
      if (offsets[i + 1] !== name.length) continue;
      const start = offsets[i]!;
      let at = 0;
      while (at < name.length && data[start + at] === name.charCodeAt(at)) at++;
      if (at === name.length) return data.toString('latin1', offsets[i + 2], offsets[i + 2]! + offsets[i + 3]!);
    }
    return undefined;
  }
}

// A latin1 string from decodeNameValuePairs read as UTF-8 (what Apache's user names and passwords are, when
// the client sent UTF-8). Invalid sequences become U+FFFD, which no user name allows.
export function utf8(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

// Splits a byte stream into records. push() takes any chunking — a record may arrive byte by byte or many
// in one chunk — and returns the complete records so far. Memory is bounded: at most one record (header +
// 65535 content + 255 padding) is held. A bad version throws FastCgiProtocolError; after that the decoder is
// unusable and the connection must be closed.
export class RecordDecoder {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  // Bytes needed before the next record can be complete: chunks are only joined once they are all there, so
  // a record trickling in byte by byte costs linear, not quadratic, copying.
  private needed = FCGI_HEADER_LEN;
  private failed = false;

  push(chunk: Buffer): FastCgiRecord[] {
    if (this.failed) throw new FastCgiProtocolError('decoder already failed');
    if (chunk.length === 0) return [];
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    if (this.pendingLength < this.needed) return [];
    const buffer = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLength);
    const records: FastCgiRecord[] = [];
    let offset = 0;
    this.needed = FCGI_HEADER_LEN;
    while (buffer.length - offset >= FCGI_HEADER_LEN) {
      const version = buffer[offset]!;
      if (version !== FCGI_VERSION_1) {
        this.failed = true;
        this.pending = [];
        this.pendingLength = 0;
        throw new FastCgiProtocolError(`unsupported FastCGI version ${version}`);
      }
      const type = buffer[offset + 1]!;
      const requestId = buffer.readUInt16BE(offset + 2);
      const contentLength = buffer.readUInt16BE(offset + 4);
      const paddingLength = buffer[offset + 6]!;
      const total = FCGI_HEADER_LEN + contentLength + paddingLength;
      if (buffer.length - offset < total) {
        this.needed = total;
        break;
      }
      // A copy, so one long-lived record does not pin a large chunk in memory.
      const content = Buffer.from(buffer.subarray(offset + FCGI_HEADER_LEN, offset + FCGI_HEADER_LEN + contentLength));
      records.push({ type, requestId, content });
      offset += total;
    }
    const rest = buffer.subarray(offset);
    this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.pendingLength = rest.length;
    return records;
  }

  // Bytes of an incomplete record held back.
  get buffered(): number {
    return this.pendingLength;
  }
}
