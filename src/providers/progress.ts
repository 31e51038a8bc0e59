/** Progress and output helpers: pure functions over what the provider reports. */

export interface Progress {
  /** 0..100 from the last tqdm bar in the logs; null when the logs hold no bar (unknown, not 0). */
  percent: number | null;
  current?: number;
  total?: number;
  /** The last log line that is not a progress bar, e.g. `Generating text with gemini-2.5-flash...`. */
  message?: string;
}

// The rule both official clients use: `^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)`, scanning from the end.
const BAR = /^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)/;

/**
 * Progress from a prediction's logs. The LAST bar line wins, so a second bar that starts over at
 * 0 % (SDXL refiner, a video decode pass) reports 0 % again; callers that want monotonic progress
 * must clamp themselves. tqdm redraws with `\r`, so carriage returns split lines too.
 */
export function parseProgress(logs: string | null | undefined): Progress {
  if (!logs) return { percent: null };
  const lines = logs.split(/\r\n|\r|\n/);
  let bar: RegExpMatchArray | null = null;
  let message: string | undefined;
  for (let i = lines.length - 1; i >= 0 && (bar === null || message === undefined); i--) {
    const line = lines[i]!;
    const m: RegExpExecArray | null = bar === null ? BAR.exec(line) : null;
    if (m) {
      bar = m;
      continue;
    }
    if (message === undefined && line.trim() !== '' && !BAR.test(line)) message = line.trim();
  }
  const out: Progress = { percent: null };
  if (bar) {
    out.percent = Math.min(100, Number(bar[1]));
    out.current = Number(bar[2]);
    out.total = Number(bar[3]);
  }
  if (message !== undefined) out.message = message;
  return out;
}

export type OutputKind = 'image' | 'video' | 'text';

export type NormalizedOutput = { urls: string[] } | { text: string };

/**
 * One shape per kind: image/video -> `{urls}` (Replicate sends a URL string or an array of them),
 * text -> `{text}` (an array of tokens joined with nothing, as the models' `concatenate` display
 * says). Null output gives null. Anything else is left out rather than guessed at.
 */
export function normalizeOutput(kind: 'image' | 'video', output: unknown): { urls: string[] } | null;
export function normalizeOutput(kind: 'text', output: unknown): { text: string } | null;
export function normalizeOutput(kind: OutputKind, output: unknown): NormalizedOutput | null;
export function normalizeOutput(kind: OutputKind, output: unknown): NormalizedOutput | null {
  if (output === null || output === undefined) return null;
  if (kind === 'text') {
    if (typeof output === 'string') return { text: output };
    if (Array.isArray(output))
      return { text: output.map((t) => (typeof t === 'string' ? t : t == null ? '' : String(t))).join('') };
    return { text: String(output) };
  }
  const list = Array.isArray(output) ? output : [output];
  return { urls: list.filter((u): u is string => typeof u === 'string' && u.length > 0) };
}
