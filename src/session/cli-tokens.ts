import { hkdfSync } from 'node:crypto';
import { Sealer } from './seal.js';

// The tokens of the command-line login (authenticate/cli-login.ts): a CLI token names a
// session, so it lives with the sessions, where identity/bearer.ts resolves it.

export interface LoginRequest {
  redirectUri: string;
  exp: number;
}

export interface CliToken {
  session: string;
  exp: number;
}

/**
 * Seals CLI tokens and login requests under keys of their own (derived from cookie_secret), so
 * a CLI token is never accepted as a cookie, a handoff or anything else, nor the other way round.
 */
export class CliTokens {
  private readonly sealer: Sealer;

  constructor(cookieSecret: Buffer) {
    this.sealer = new Sealer(
      Buffer.from(hkdfSync('sha256', cookieSecret, Buffer.alloc(0), 'portcullis/v1/cli', 32)),
    );
  }

  mintToken(sessionValue: string, exp: number): string {
    return this.sealer.sealJson(
      'handoff',
      { session: sessionValue, exp } satisfies CliToken,
      'cli-token',
    );
  }

  openToken(token: string, now: number): CliToken | null {
    const t = this.sealer.openJson<CliToken>('handoff', token, 'cli-token', now);
    return t && typeof t.session === 'string' && typeof t.exp === 'number' ? t : null;
  }

  sealRequest(r: LoginRequest): string {
    return this.sealer.sealJson('login', r, 'cli-login');
  }

  openRequest(value: string, now: number): LoginRequest | null {
    const r = this.sealer.openJson<LoginRequest>('login', value, 'cli-login', now);
    return r && typeof r.redirectUri === 'string' ? r : null;
  }
}
