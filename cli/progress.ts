/**
 * A one-line progress bar on stderr. Drawn only on a terminal, so logs and pipes stay clean;
 * `done()` always leaves a final line.
 */
export interface Progress {
  update(done: number, total: number, detail?: string): void;
  done(message: string): void;
}

/** Creates a progress bar labelled `label`. */
export function createProgress(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  const tty = stream.isTTY === true;
  let lastDraw = 0;
  return {
    update(done, total, detail = '') {
      if (!tty) return;
      const now = Date.now();
      if (now - lastDraw < 80 && done < total) return;
      lastDraw = now;
      const width = 28;
      const ratio = total > 0 ? Math.min(1, done / total) : 0;
      const filled = Math.round(ratio * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      stream.write(`\r${label} ${bar} ${(ratio * 100).toFixed(0).padStart(3)}% ${detail}\u001b[K`);
    },
    done(message) {
      stream.write(`${tty ? '\r\u001b[K' : ''}${label} ${message}\n`);
    },
  };
}
