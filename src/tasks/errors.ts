/** Field → messages, as Phoenix renders changeset errors: `{"errors": {"model": ["is not supported for image_gen"]}}`. */
export type FieldErrors = Record<string, string[]>;

/**
 * An empty FieldErrors. Field names come from clients, and a client may name a field
 * `constructor`, `toString` or `__proto__`: with no prototype, each of them is a plain own key
 * (on a `{}`, `out['constructor']` is Object and `out['__proto__'] = x` replaces the prototype).
 */
export function emptyFieldErrors(): FieldErrors {
  return Object.create(null) as FieldErrors;
}

/** Adds `message` under `field` (own keys only, whatever the field's name). */
export function addFieldError(errors: FieldErrors, field: string, message: string): void {
  const list = Object.hasOwn(errors, field) ? errors[field] : undefined;
  if (list) list.push(message);
  else errors[field] = [message];
}

/** A request that cannot become a task. Nothing was stored. */
export class ValidationError extends Error {
  /** The fields, copied into a prototype-less object (see emptyFieldErrors), so merging them elsewhere is safe. */
  readonly fields: FieldErrors;

  constructor(fields: FieldErrors) {
    super(
      Object.entries(fields)
        .map(([f, m]) => `${f} ${m.join(', ')}`)
        .join('; '),
    );
    this.fields = Object.assign(emptyFieldErrors(), fields);
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
