/** Long-poll session tokens: `<node>.<session>.<mac>`, the node that holds the session, its random id, and their HMAC. */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a node id and a session id look like (they travel in tokens and bus messages). */
export const ID = /^[A-Za-z0-9_-]{1,64}$/;

export class SessionTokens {
  private readonly key: Buffer;
  constructor(secret: string | Buffer) {
    this.key = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8');
  }
  private mac(node: string, sid: string): string {
    return createHmac('sha256', this.key).update(`${node}.${sid}`).digest('base64url');
  }
  sign(node: string, sid: string): string {
    return `${node}.${sid}.${this.mac(node, sid)}`;
  }
  /** The node and session a token names, or null if it is malformed or not signed with our key. */
  verify(token: string): { node: string; sid: string } | null {
    const [node, sid, mac, extra] = token.split('.');
    if (extra !== undefined || !node || !sid || !mac || !ID.test(node) || !ID.test(sid)) return null;
    const want = Buffer.from(this.mac(node, sid));
    const got = Buffer.from(mac);
    return got.length === want.length && timingSafeEqual(got, want) ? { node, sid } : null;
  }
}
