/** Field → messages, as Phoenix renders changeset errors: `{"errors": {"model": ["is not supported for image_gen"]}}`. */
export type FieldErrors = Record<string, string[]>;

/** A request that cannot become a task. Nothing was stored. */
export class ValidationError extends Error {
  constructor(readonly fields: FieldErrors) {
    super(
      Object.entries(fields)
        .map(([f, m]) => `${f} ${m.join(', ')}`)
        .join('; '),
    );
  }
}

export class NotFoundError extends Error {
  constructor(what = 'Not Found') {
    super(what);
  }
}

/** What was to be created exists already (a task id a client chose, taken meanwhile). */
export class ConflictError extends Error {}

/** PostgreSQL's unique_violation (23505), as pg and PGlite report it. */
export const isUniqueViolation = (err: unknown): boolean => (err as { code?: string } | null)?.code === '23505';
