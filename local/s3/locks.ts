/**
 * Per-key reader/writer locks. s3rver writes objects in place, so without them a GET racing a
 * PUT of the same key can read half-written bytes (a torn status.json), and a conditional PUT's
 * check and write would not be atomic. Writers are preferred so readers polling a key cannot
 * starve an update.
 */
interface KeyState {
  readers: number;
  writer: boolean;
  waiting: { write: boolean; grant: () => void }[];
}

/** Reader/writer locks by key; `acquire` resolves with the release function. */
export class KeyLocks {
  private readonly keys = new Map<string, KeyState>();

  acquire(key: string, write: boolean): Promise<() => void> {
    let state = this.keys.get(key);
    if (state === undefined) {
      state = { readers: 0, writer: false, waiting: [] };
      this.keys.set(key, state);
    }
    const s = state;
    const release = () => {
      if (write) s.writer = false;
      else s.readers -= 1;
      this.pump(key, s);
    };
    return new Promise((resolve) => {
      s.waiting.push({ write, grant: () => resolve(once(release)) });
      this.pump(key, s);
    });
  }

  private pump(key: string, s: KeyState) {
    while (s.waiting.length > 0 && !s.writer) {
      const next = s.waiting[0]!;
      if (next.write) {
        if (s.readers > 0) return;
        s.waiting.shift();
        s.writer = true;
        next.grant();
        return;
      }
      s.waiting.shift();
      s.readers += 1;
      next.grant();
    }
    if (s.readers === 0 && !s.writer && s.waiting.length === 0) this.keys.delete(key);
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}
