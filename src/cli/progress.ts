// Progress of long work on stderr: a bar redrawn in place on a terminal (percentage, rate, ETA),
// plain lines on a pipe (at each status change, and every 10 %).

/** What a progress report says. */
export interface Progress {
  status: string;
  current: number;
  total: number;
}

/** A readable size. */
function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Seconds as `m:ss` (or `h:mm:ss`). */
function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (n: number): string => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/** Shows progress on `out` (stderr): a bar on a terminal, lines on a pipe. */
export class ProgressView {
  readonly #out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly #label: string;
  readonly #started = performance.now();
  #lastStatus = "";
  #lastTenth = -1;
  #drawn = false;
  /** Recent (time, current) points, for the rate. */
  #points: [number, number][] = [];

  constructor(out: NodeJS.WritableStream, label: string) {
    this.#out = out;
    this.#label = label;
  }

  /** A new report. */
  update(p: Progress): void {
    const now = performance.now();
    this.#points.push([now, p.current]);
    while (this.#points.length > 2 && now - this.#points[0]![0] > 5000) this.#points.shift();
    const fraction = p.total > 0 ? Math.min(1, p.current / p.total) : 0;
    const percent = Math.floor(fraction * 100);
    if (this.#out.isTTY === true) {
      this.#draw(p, fraction);
      return;
    }
    const tenth = Math.floor(percent / 10);
    if (p.status === this.#lastStatus && tenth === this.#lastTenth) return;
    this.#lastStatus = p.status;
    this.#lastTenth = tenth;
    this.#out.write(
      `${this.#label}: ${p.status} ${percent}% (${bytes(p.current)} of ${bytes(p.total)})\n`,
    );
  }

  /** The work is over: end the bar's line. */
  done(): void {
    if (this.#drawn) this.#out.write("\n");
    this.#drawn = false;
  }

  /** Bytes per second over the last few seconds. */
  get rate(): number {
    const first = this.#points[0];
    const last = this.#points.at(-1);
    if (first === undefined || last === undefined || last[0] - first[0] < 200) return 0;
    return ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
  }

  #draw(p: Progress, fraction: number): void {
    const rate = this.rate;
    const eta =
      rate > 0 && p.total > p.current ? ` ETA ${clock((p.total - p.current) / rate)}` : "";
    const speed = rate > 0 ? ` ${bytes(rate)}/s` : "";
    const elapsed = clock((performance.now() - this.#started) / 1000);
    const tail = ` ${String(Math.floor(fraction * 100)).padStart(3)}%${speed}${eta} ${elapsed} ${p.status}`;
    const width = Math.max(
      10,
      Math.min(40, (this.#out.columns ?? 80) - this.#label.length - tail.length - 4),
    );
    const full = Math.round(fraction * width);
    const bar = `[${"#".repeat(full)}${"-".repeat(width - full)}]`;
    this.#out.write(`\r\x1b[K${this.#label} ${bar}${tail}`);
    this.#drawn = true;
  }
}
