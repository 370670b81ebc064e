import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

// Everything Portcullis hands to a browser (session cookies, login state, handoff tokens,
// return URLs) is sealed with AES-256-GCM under a key derived per purpose from
// cookie_secret, so a value minted for one purpose is never accepted for another.

export type SealPurpose = 'session' | 'login' | 'handoff' | 'return' | 'store-key' | 'store-meta';

export class Sealer {
  private readonly keys = new Map<SealPurpose, Buffer>();
  private readonly indexKey: Buffer;

  constructor(secret: Buffer) {
    this.indexKey = Buffer.from(
      hkdfSync('sha256', secret, Buffer.alloc(0), 'portcullis/v1/store-index', 32),
    );
    for (const p of ['session', 'login', 'handoff', 'return', 'store-key', 'store-meta'] as const) {
      this.keys.set(
        p,
        Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `portcullis/v1/${p}`, 32)),
      );
    }
  }

  /** base64url(iv | ciphertext | tag). `bind` (e.g. the cookie name) is authenticated, not stored. */
  seal(purpose: SealPurpose, plaintext: Buffer, bind = ''): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.keys.get(purpose)!, iv);
    c.setAAD(Buffer.from(`${purpose}|${bind}`));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64url');
  }

  /**
   * A keyed hash naming something in a shared store (an IdP session id, a subject) without the
   * store holding the value itself: a dump shows which sessions belong together, not to whom.
   */
  indexName(text: string): string {
    return createHmac('sha256', this.indexKey).update(text).digest('base64url').slice(0, 32);
  }

  /** null for anything tampered, truncated, foreign or malformed: never throws. */
  open(purpose: SealPurpose, value: string, bind = ''): Buffer | null {
    if (value.length < 38 || value.length > 65536 || !/^[A-Za-z0-9_-]+$/.test(value)) return null;
    const buf = Buffer.from(value, 'base64url');
    // Only the canonical encoding is accepted: trailing junk must not decode to the same bytes.
    if (buf.length < 29 || buf.toString('base64url') !== value) return null;
    try {
      const d = createDecipheriv('aes-256-gcm', this.keys.get(purpose)!, buf.subarray(0, 12));
      d.setAAD(Buffer.from(`${purpose}|${bind}`));
      d.setAuthTag(buf.subarray(buf.length - 16));
      return Buffer.concat([d.update(buf.subarray(12, buf.length - 16)), d.final()]);
    } catch {
      return null;
    }
  }

  sealJson(purpose: SealPurpose, obj: unknown, bind = ''): string {
    return this.seal(purpose, Buffer.from(JSON.stringify(obj)), bind);
  }

  /** Parsed JSON, or null when it does not open or its `exp` (ms) has passed. */
  openJson<T extends { exp?: number }>(
    purpose: SealPurpose,
    value: string,
    bind = '',
    now = Date.now(),
  ): T | null {
    const buf = this.open(purpose, value, bind);
    if (!buf) return null;
    try {
      const obj = JSON.parse(buf.toString('utf8')) as T;
      if (obj === null || typeof obj !== 'object') return null;
      if (typeof obj.exp === 'number' && obj.exp <= now) return null;
      return obj;
    } catch {
      return null;
    }
  }
}
