// Logs in through an OpenID provider's HTML login form the way a browser user would, for
// any relying party: start at a protected URL, follow redirects, fill in the form once.
import { navigate, parseForms } from './http.js';
import type { CookieJar, Resp, Step } from './http.js';

export const BROWSER_HEADERS: Record<string, string> = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-language': 'en-US,en;q=0.9',
  'user-agent':
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 portcullis-tests',
};

export async function loginThroughIdp(
  startUrl: string,
  opts: {
    jar: CookieJar;
    username: string;
    password: string;
    headers?: Record<string, string>;
    max?: number;
  },
): Promise<{ final: Resp; chain: string[] }> {
  let submitted = false;
  const fillLoginForm = (resp: Resp, url: string): Step | undefined => {
    // Once only: a second login form after submitting means the credentials were refused,
    // and that page is the answer the caller wants to see.
    if (submitted || !/text\/html/i.test(String(resp.headers['content-type'] ?? '')))
      return undefined;
    const form = parseForms(resp.body, url).find((f) => f.fields.some(([n]) => n === 'password'));
    if (!form) return undefined;
    submitted = true;
    const fields = new URLSearchParams();
    for (const [n, v] of form.fields) {
      if (n === 'username' || n === 'login' || n === 'email') fields.append(n, opts.username);
      else if (n === 'password') fields.append(n, opts.password);
      else fields.append(n, v);
    }
    if (form.method === 'GET') {
      const u = new URL(form.action);
      u.search = fields.toString();
      return { method: 'GET', url: u.href };
    }
    return {
      method: 'POST',
      url: form.action,
      body: fields.toString(),
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: new URL(url).origin,
        referer: url,
      },
    };
  };
  const follow: Parameters<typeof navigate>[1] = {
    jar: opts.jar,
    headers: { ...BROWSER_HEADERS, ...opts.headers },
  };
  if (opts.max !== undefined) follow.max = opts.max;
  return navigate({ method: 'GET', url: startUrl }, follow, fillLoginForm);
}
