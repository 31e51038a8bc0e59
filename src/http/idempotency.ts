import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db';

const KEY = /^[\x21-\x7e]{1,255}$/;
const TTL_MS = 24 * 3600 * 1000;
/** An in-flight claim older than this belongs to a process that died (its task was never committed). */
const STALE_IN_FLIGHT_MS = 60_000;

export type IdempotencyOutcome =
  { kind: 'proceed' } | { kind: 'replay'; status: number; body: unknown } | { kind: 'conflict'; reason: string };

/** Deeper than this, bodyHash refuses (POST /api/tasks refuses bodies deeper than 32 before hashing). */
const MAX_HASH_DEPTH = 64;

/** A stable hash of a JSON body, independent of key order. */
export function bodyHash(body: unknown): string {
  // Recursive, so bounded: a client's body must never be able to overflow the stack.
  const canonical = (v: unknown, depth: number): unknown => {
    if (depth > MAX_HASH_DEPTH) throw new RangeError(`body is nested more than ${MAX_HASH_DEPTH} levels deep`);
    if (Array.isArray(v)) return v.map((x) => canonical(x, depth + 1));
    if (v === null || typeof v !== 'object') return v;
    // fromEntries defines keys (a `__proto__` key stays a key); Object.keys lists own keys only.
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k], depth + 1)]),
    );
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical(body, 0) ?? null))
    .digest('hex');
}

export function isValidKey(key: string): boolean {
  return KEY.test(key);
}

/**
 * `Idempotency-Key` on POST /api/tasks: the first request with a key claims it;
 * its answer is stored in the same transaction as its task, and replayed for 24 h
 * to the same key and body. A different body, or a request still in flight, conflicts.
 */
export class IdempotencyKeys {
  constructor(
    private readonly db: Db,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async begin(userId: string, key: string, hash: string): Promise<IdempotencyOutcome> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.now();
      const inserted = await this.db('idempotency_keys')
        .insert({
          user_id: userId,
          key,
          request_hash: hash,
          created_at: now,
          expires_at: new Date(now.getTime() + TTL_MS),
        })
        .onConflict(['user_id', 'key'])
        .ignore()
        .returning('key');
      if (inserted.length === 1) return { kind: 'proceed' };
      const row = await this.db('idempotency_keys').where({ user_id: userId, key }).first();
      if (!row) continue;
      if (new Date(row.expires_at).getTime() <= now.getTime()) {
        await this.db('idempotency_keys').where({ user_id: userId, key }).andWhere('expires_at', '<=', now).delete();
        continue;
      }
      if (row.request_hash !== hash) {
        return { kind: 'conflict', reason: 'Idempotency-Key was already used with a different request body' };
      }
      if (row.status_code === null) {
        if (now.getTime() - new Date(row.created_at).getTime() > STALE_IN_FLIGHT_MS) {
          const taken = await this.db('idempotency_keys')
            .where({ user_id: userId, key, created_at: row.created_at })
            .whereNull('status_code')
            .update({ created_at: now });
          if (taken === 1) return { kind: 'proceed' };
          continue;
        }
        return { kind: 'conflict', reason: 'a request with this Idempotency-Key is still in flight' };
      }
      return { kind: 'replay', status: row.status_code, body: row.response };
    }
    return { kind: 'conflict', reason: 'a request with this Idempotency-Key is still in flight' };
  }

  /** Store the answer, inside the transaction that stored the task. */
  async complete(trx: Knex.Transaction, userId: string, key: string, status: number, body: unknown): Promise<void> {
    await trx('idempotency_keys')
      .where({ user_id: userId, key })
      .update({ status_code: status, response: JSON.stringify(body) });
  }

  /** Release a claim whose request was refused, so a corrected request may use the key. */
  async abandon(userId: string, key: string): Promise<void> {
    await this.db('idempotency_keys').where({ user_id: userId, key }).whereNull('status_code').delete();
  }

  /** Delete expired keys. */
  async sweep(): Promise<number> {
    return this.db('idempotency_keys').where('expires_at', '<=', this.now()).delete();
  }
}
