import type { Logger } from 'pino';

declare global {
  namespace Express {
    interface Request {
      /** The request's id (from X-Request-Id when sane, else new). */
      id: string;
      /** A logger whose lines carry the request id. */
      log: Logger;
      /** The authenticated user. */
      userId: string;
    }
  }
}
export {};
