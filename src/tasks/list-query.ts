import { z } from 'zod';
import { addFieldError, emptyFieldErrors, ValidationError } from './errors';
import { unstorableText } from './input';
import { TASK_STATUSES, type TaskStatus } from './task';

/** The longest `q` a list takes: a search is a few words, not a prompt. */
export const MAX_SEARCH_CHARS = 200;
export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 200;

/** A page of a user's tasks, as `GET /api/tasks` asks for it, validated. */
export interface ListQuery {
  status?: TaskStatus;
  /** Case-insensitive text the prompt contains, taken literally (`%` and `_` are not wildcards). */
  search?: string;
  limit: number;
  /** Position of the last task of the previous page (from its `next_cursor`). */
  before?: number;
}

/** `next_cursor`: the position of a page's last task (the same for every filter). */
export const encodeCursor = (pos: string | number) => Buffer.from(`p${pos}`).toString('base64url');

function decodeCursor(cursor: string): number | undefined {
  const s = Buffer.from(cursor, 'base64url').toString();
  return /^p\d{1,18}$/.test(s) ? Number(s.slice(1)) : undefined;
}

/** One query parameter: a string given once (`?a=1&a=2` is an array); empty means not given. */
const param = <T>(inner: z.ZodType<T, string>) =>
  z.preprocess((v) => (v === '' ? undefined : v), z.string({ error: 'must be given once' }).pipe(inner).optional());

const statusParam = z.enum(TASK_STATUSES, { error: `must be one of: ${TASK_STATUSES.join(', ')}` });

const limitParam = z
  .string()
  .refine((s) => /^\d{1,3}$/.test(s) && Number(s) >= 1 && Number(s) <= MAX_PAGE, {
    error: `must be an integer from 1 to ${MAX_PAGE}`,
  })
  .transform(Number);

const cursorParam = z.string().transform((s, ctx) => {
  const pos = decodeCursor(s);
  if (pos === undefined) {
    ctx.addIssue({ code: 'custom', message: 'is invalid: pass the next_cursor of the previous page as it is' });
    return z.NEVER;
  }
  return pos;
});

const searchParam = z
  .string()
  .max(MAX_SEARCH_CHARS, { error: `should have at most ${MAX_SEARCH_CHARS} characters` })
  .superRefine((s, ctx) => {
    const why = unstorableText(s);
    if (why) ctx.addIssue({ code: 'custom', message: why });
  });

const listQuerySchema = z.object({
  status: param(statusParam),
  q: param(searchParam),
  limit: param(limitParam),
  cursor: param(cursorParam),
});

/**
 * `?status=&q=&limit=&cursor=` of `GET /api/tasks`, validated. Other parameters are ignored.
 * Throws ValidationError naming each bad parameter.
 */
export function parseListQuery(query: Record<string, unknown>): ListQuery {
  const parsed = listQuerySchema.safeParse(query);
  if (!parsed.success) {
    const errors = emptyFieldErrors();
    for (const issue of parsed.error.issues) addFieldError(errors, String(issue.path[0] ?? 'query'), issue.message);
    throw new ValidationError(errors);
  }
  const { status, q, limit, cursor } = parsed.data;
  return { status, search: q, limit: limit ?? DEFAULT_PAGE, before: cursor };
}
