// What one `portcullis probe` check reports, and the timing wrapper every check runs in.

export type ProbeStatus = 'ok' | 'fail' | 'skip';

export interface ProbeCheck {
  /** idp_discovery, idp_jwks, idp_client, upstream, session_store */
  check: string;
  /** What was checked: a URL, or route id and URL. */
  target: string;
  status: ProbeStatus;
  ms: number;
  detail: string;
}

export async function timed(
  check: string,
  target: string,
  fn: () => Promise<{ status: ProbeStatus; detail: string }>,
): Promise<ProbeCheck> {
  const t = performance.now();
  let r: { status: ProbeStatus; detail: string };
  try {
    r = await fn();
  } catch (e) {
    r = { status: 'fail', detail: errText(e) };
  }
  return {
    check,
    target,
    status: r.status,
    ms: Math.round((performance.now() - t) * 10) / 10,
    detail: r.detail,
  };
}

export function errText(e: unknown): string {
  const err = e as Error & { code?: string; cause?: { code?: string; message?: string } };
  const code = err?.cause?.code ?? err?.code;
  if (
    err?.name === 'TimeoutError' ||
    err?.name === 'AbortError' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  )
    return 'no answer in time (timeout)';
  return code
    ? `${code}${err.cause?.message && !err.cause.message.includes(code) ? `: ${err.cause.message}` : ''}`
    : (err?.message ?? String(e));
}
