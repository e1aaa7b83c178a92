import type { Readable } from 'node:stream';

// mod_authnz_external's "pipe" method: the module writes "user\npassword\n" (authenticator) or
// "user\ngroup1 group2 …\n" (group checker) on stdin and closes it. Input is read with a size cap and a time
// cap: a peer that sends too much or never closes the pipe must not hold the process.
export interface PipeInput {
  first: string;
  second: string;
}

export class PipeInputError extends Error {}

export const MAX_PIPE_INPUT_BYTES = 8192;

// Exactly two lines, read to EOF: mod_authnz_external passes a Basic-auth user name containing a newline
// through unchanged, so "alice\npw" as the user name would otherwise shift the lines and make the attacker's
// text the password. Anything but two lines is refused.
export async function readPipeInput(input: Readable, timeoutMs: number): Promise<PipeInput> {
  const text = await readBounded(input, MAX_PIPE_INPUT_BYTES, timeoutMs);
  const lines = text.split('\n');
  // The second line may lack its newline when a person types it.
  if (lines.length === 3 && lines[2] === '') lines.pop();
  if (lines.length !== 2) throw new PipeInputError(`expected exactly two lines on stdin, got ${lines.length}`);
  const [first, second] = lines as [string, string];
  // The name is passed on as it came: "alice\r" is not alice (it fails the name pattern and is refused).
  return { first, second: second.replace(/\r$/, '') };
}

function readBounded(input: Readable, maxBytes: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: Error) => {
      clearTimeout(timer);
      input.removeAllListeners('data');
      input.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(() => finish(new PipeInputError(`stdin was not closed within ${timeoutMs} ms`)), timeoutMs);
    input.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) return finish(new PipeInputError(`more than ${maxBytes} bytes on stdin`));
      chunks.push(chunk);
    });
    input.once('end', () => finish());
    input.once('error', (error) => finish(new PipeInputError(`cannot read stdin: ${error.message}`)));
  });
}
