// A local stand-in for Google's OAuth token endpoint (the service-account JWT bearer grant) and
// the Admin SDK Directory API's groups.list, built from Google's documented shapes:
// - developers.google.com/identity/protocols/oauth2/service-account (the assertion's iss,
//   scope, aud = token_uri, exp, iat, sub; grant_type urn:ietf:params:oauth:grant-type:jwt-bearer;
//   unauthorized_client when the client id has no domain-wide delegation for the scope)
// - developers.google.com/admin-sdk/directory/reference/rest/v1/groups/list (userKey,
//   maxResults, pageToken; {kind: "admin#directory#groups", groups: [...], nextPageToken})
// - developers.google.com/workspace/admin/directory/v1/limits (403 rateLimitExceeded, 429)
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportPKCS8, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';

export interface GoogleStandin {
  base: string;
  /** The service account key file's JSON text (as downloaded from Google Cloud). */
  keyFile: string;
  /** Group emails per user email. */
  memberships: Map<string, string[]>;
  /** The client id has domain-wide delegation for the groups scope. */
  delegated: boolean;
  pageSize: number;
  faults: Array<{ status: number; body: unknown; times: number }>;
  log: string[];
  close(): Promise<void>;
}

const SCOPE = 'https://www.googleapis.com/auth/admin.directory.group.readonly';

export async function startGoogleStandin(o: { admin: string }): Promise<GoogleStandin> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const clientEmail = `portcullis@corp-project.iam.gserviceaccount.com`;
  const tokens = new Set<string>();
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const s: GoogleStandin = {
    base,
    keyFile: JSON.stringify({
      type: 'service_account',
      project_id: 'corp-project',
      private_key_id: randomBytes(20).toString('hex'),
      private_key: await exportPKCS8(privateKey as CryptoKey),
      client_email: clientEmail,
      client_id: '1234567890',
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: `${base}/token`,
    }),
    memberships: new Map(),
    delegated: true,
    pageSize: 200,
    faults: [],
    log: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    s.log.push(`${req.method} ${url.pathname}${url.search}`);
    if (url.pathname === '/token' && req.method === 'POST') {
      const form = new URLSearchParams(await body(req));
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
        return json(res, 400, { error: 'unsupported_grant_type' });
      try {
        const { payload } = await jwtVerify(form.get('assertion') ?? '', publicKey, {
          issuer: clientEmail,
          audience: `${base}/token`,
          maxTokenAge: '1h',
        });
        if (payload.scope !== SCOPE || payload.sub !== o.admin || !s.delegated)
          return json(res, 401, {
            error: 'unauthorized_client',
            error_description:
              'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
          });
      } catch {
        return json(res, 400, {
          error: 'invalid_grant',
          error_description: 'Invalid JWT Signature.',
        });
      }
      const token = `ya29.${randomBytes(24).toString('base64url')}`;
      tokens.add(token);
      return json(res, 200, { access_token: token, expires_in: 3599, token_type: 'Bearer' });
    }
    if (url.pathname === '/admin/directory/v1/groups') {
      const fault = s.faults[0];
      if (fault) {
        if (--fault.times <= 0) s.faults.shift();
        return json(res, fault.status, fault.body);
      }
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (!tokens.has(token))
        return json(res, 401, { error: { code: 401, message: 'Invalid Credentials' } });
      const user = (url.searchParams.get('userKey') ?? '').toLowerCase();
      const all = s.memberships.get(user);
      if (!all)
        return json(res, 404, { error: { code: 404, message: 'Resource Not Found: userKey' } });
      const size = Math.min(s.pageSize, Number(url.searchParams.get('maxResults') ?? '200'));
      const start = Number(url.searchParams.get('pageToken') ?? '0');
      const page = all.slice(start, start + size);
      const out: Record<string, unknown> = { kind: 'admin#directory#groups', etag: '"x"' };
      if (page.length)
        out.groups = page.map((email, i) => ({
          kind: 'admin#directory#group',
          id: `0${start + i}abc`,
          email,
          name: email.split('@')[0],
          directMembersCount: '3',
          adminCreated: true,
        }));
      if (start + size < all.length) out.nextPageToken = String(start + size);
      return json(res, 200, out);
    }
    res.writeHead(404).end();
  }
  return s;
}

function body(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (data += c));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

export const RATE_LIMITED = {
  error: {
    code: 403,
    message: 'Rate Limit Exceeded',
    errors: [
      { domain: 'usageLimits', reason: 'rateLimitExceeded', message: 'Rate Limit Exceeded' },
    ],
  },
};
