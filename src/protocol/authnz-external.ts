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

export async function readPipeInput(input: Readable, timeoutMs: number): Promise<PipeInput> {
  const text = await readBounded(input, MAX_PIPE_INPUT_BYTES, timeoutMs);
  const lines = text.split('\n');
  if (lines.length < 2) throw new PipeInputError('expected two lines on stdin, got fewer');
  // The second line may lack its newline when a person types it; a third line is not ours to read.
  const [first, second] = lines as [string, string];
  return { first: first.replace(/\r$/, ''), second: second.replace(/\r$/, '') };
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
      // Two complete lines are all there is to read; no need to wait for EOF.
      if (Buffer.concat(chunks).toString('latin1').split('\n').length > 2) finish();
    });
    input.once('end', () => finish());
    input.once('error', (error) => finish(new PipeInputError(`cannot read stdin: ${error.message}`)));
  });
}
