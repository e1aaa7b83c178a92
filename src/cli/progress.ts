// Progress of a long admin command on stderr (stdout stays the command's result): a bar redrawn in place on a
// terminal, else one line every few seconds, so a log or a CI job shows the command is alive without a flood.
export interface Progress {
  advance(count: number): void;
  done(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  intervalMs?: number;
  now?: () => number;
}

export function startProgress(label: string, total: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const tty = stream.isTTY === true;
  const intervalMs = options.intervalMs ?? (tty ? 100 : 5_000);
  let count = 0;
  let shownAt = now();
  const render = (): string => {
    const share = total === 0 ? 1 : count / total;
    if (!tty) return `${label}: ${count}/${total} (${Math.floor(share * 100)}%)\n`;
    const width = 30;
    const filled = Math.round(share * width);
    return `\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${count}/${total}`;
  };
  return {
    advance(step) {
      count += step;
      if (now() - shownAt < intervalMs) return;
      shownAt = now();
      stream.write(render());
    },
    done() {
      if (tty) stream.write(render() + '\n');
    },
  };
}
