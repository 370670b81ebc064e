// Headless Debian Chromium for end-to-end tests. Test host names are resolved inside the
// browser (--host-resolver-rules) so no /etc/hosts edits or DNS are needed; a MAP rule
// without a port keeps the URL's port.
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export function hostResolverRules(hostMap: string[]): string {
  const rules = hostMap.map((h) => `MAP ${h} 127.0.0.1`);
  rules.push('EXCLUDE localhost');
  return rules.join(', ');
}

export async function launchBrowser(hostMap: string[]): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=${hostResolverRules(hostMap)}`,
    ],
  });
}
