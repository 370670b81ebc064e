// The subset of TOML that oauth2-proxy's legacy config file (oauth2-proxy.cfg) is written in:
// `key = value` lines, `#` comments, values that are a basic or literal string, true/false, an
// integer, or a list of those (which may span lines). oauth2-proxy reads the file with viper's
// TOML reader, so anything outside this subset (tables, dates, inline tables) configures nothing
// there either; it is refused here with the line, not guessed at.

export type CfgValue = string | number | boolean | Array<string | number | boolean>;

export interface CfgEntry {
  value: CfgValue;
  line: number;
}

export class CfgSyntaxError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
  }
}

const KEY = /^[A-Za-z0-9_-]+$/;

/** Every `key = value` of the file, by key. Throws CfgSyntaxError naming the line. */
export function parseCfg(text: string, file: string): Map<string, CfgEntry> {
  const out = new Map<string, CfgEntry>();
  const src = text.replace(/^\uFEFF/, '');
  const lines = src.split(/\r?\n/);
  let i = 0;
  while (i < lines.length) {
    const lineNo = i + 1;
    const raw = lines[i]!;
    i++;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (trimmed.startsWith('[')) {
      throw new CfgSyntaxError(
        file,
        lineNo,
        `tables like ${trimmed.split(/\s/)[0]} are not part of oauth2-proxy's config file (every setting is a top-level key = value)`,
      );
    }
    const eq = raw.indexOf('=');
    if (eq < 0)
      throw new CfgSyntaxError(
        file,
        lineNo,
        'expected key = value (an "=" after the setting name)',
      );
    const key = raw
      .slice(0, eq)
      .trim()
      .replace(/^"(.*)"$/, '$1');
    if (!KEY.test(key))
      throw new CfgSyntaxError(
        file,
        lineNo,
        `expected a setting name made of letters, digits and _ before "=", got ${JSON.stringify(key)}`,
      );
    let rest = raw.slice(eq + 1);
    // A list may continue over the following lines until its closing bracket.
    if (rest.trim().startsWith('[')) {
      while (!listClosed(rest) && i < lines.length) {
        rest += '\n' + lines[i]!;
        i++;
      }
    }
    const reader = new Reader(rest, file, lineNo, isSecretName(key));
    const value = reader.value();
    reader.end();
    if (out.has(key))
      throw new CfgSyntaxError(
        file,
        lineNo,
        `${key} is set twice (first on line ${out.get(key)!.line}); TOML refuses a repeated key, so remove one`,
      );
    out.set(key, { value, line: lineNo });
  }
  return out;
}

/** Whether the bracket opened by a list is closed, ignoring brackets inside strings and comments. */
function listClosed(text: string): boolean {
  let depth = 0;
  let quote: string | null = null;
  for (let k = 0; k < text.length; k++) {
    const c = text[k]!;
    if (quote) {
      if (c === '\\' && quote === '"') k++;
      else if (c === quote) quote = null;
      else if (c === '\n') quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#') {
      const nl = text.indexOf('\n', k);
      if (nl < 0) return false;
      k = nl;
    } else if (c === '[') depth++;
    else if (c === ']') {
      depth--;
      if (depth === 0) return true;
    }
  }
  return false;
}

/** Settings whose value must never be quoted back in an error message. */
export function isSecretName(key: string): boolean {
  return /secret|password|token|jwt_key|api_key|connection_url|_key$/i.test(key);
}

class Reader {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly startLine: number,
    /** The setting holds a secret: errors describe the value without quoting it. */
    private readonly secret: boolean,
  ) {}

  private show(text: string): string {
    return this.secret ? `${text.length} characters (not shown: a secret)` : JSON.stringify(text);
  }

  private fail(message: string): never {
    const line = this.startLine + (this.text.slice(0, this.pos).match(/\n/g)?.length ?? 0);
    throw new CfgSyntaxError(this.file, line, message);
  }

  /** Skips spaces, and (where `newlines`) line breaks and comments too. */
  private skip(newlines: boolean): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === ' ' || c === '\t') this.pos++;
      else if (newlines && (c === '\n' || c === '\r')) this.pos++;
      else if (newlines && c === '#') {
        const nl = this.text.indexOf('\n', this.pos);
        this.pos = nl < 0 ? this.text.length : nl;
      } else return;
    }
  }

  value(): CfgValue {
    this.skip(false);
    const c = this.text[this.pos];
    if (c === '[') return this.list();
    return this.scalar();
  }

  private list(): Array<string | number | boolean> {
    const opened = this.pos;
    this.pos++;
    const items: Array<string | number | boolean> = [];
    for (;;) {
      this.skip(true);
      if (this.text[this.pos] === ']') {
        this.pos++;
        return items;
      }
      if (this.pos >= this.text.length) {
        this.pos = opened;
        this.fail('the list that starts here has no closing "]"');
      }
      if (this.text[this.pos] === '[')
        this.fail('a list inside a list is not an oauth2-proxy setting');
      items.push(this.scalar());
      this.skip(true);
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c !== ']')
        this.fail(`expected "," or "]" in the list, got ${JSON.stringify(c ?? 'end of file')}`);
    }
  }

  private scalar(): string | number | boolean {
    const c = this.text[this.pos];
    if (c === '"') return this.basicString();
    if (c === "'") return this.literalString();
    const m = /^[^\s,\]#]+/.exec(this.text.slice(this.pos));
    const word = m?.[0] ?? '';
    if (word === 'true' || word === 'false') {
      this.pos += word.length;
      return word === 'true';
    }
    if (/^[+-]?\d+(?:_\d+)*$/.test(word)) {
      this.pos += word.length;
      return Number(word.replaceAll('_', ''));
    }
    this.fail(
      word
        ? `expected a quoted string, true/false, a number or a [list], got ${this.show(word)} (put text in double quotes)`
        : 'expected a value after "="',
    );
  }

  private basicString(): string {
    if (this.text.startsWith('"""', this.pos))
      this.fail('multi-line strings (""") are not used by oauth2-proxy settings');
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n' || c === '\r')
        this.fail('this string has no closing quote');
      this.pos++;
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.text[this.pos];
      this.pos++;
      const simple: Record<string, string> = {
        '"': '"',
        '\\': '\\',
        n: '\n',
        t: '\t',
        r: '\r',
        b: '\b',
        f: '\f',
      };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'u' || e === 'U') {
        const len = e === 'u' ? 4 : 8;
        const hex = this.text.slice(this.pos, this.pos + len);
        if (!new RegExp(`^[0-9A-Fa-f]{${len}}$`).test(hex))
          this.fail(`expected ${len} hex digits after \\${e}`);
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
          this.fail(`\\${e}${hex} is not a Unicode character`);
        out += String.fromCodePoint(cp);
        this.pos += len;
      } else
        this.fail(
          `unknown escape \\${e ?? ''} in a double-quoted string (write \\\\ for a backslash, or use 'single quotes')`,
        );
    }
  }

  private literalString(): string {
    if (this.text.startsWith("'''", this.pos))
      this.fail("multi-line strings (''') are not used by oauth2-proxy settings");
    this.pos++;
    const end = this.text.indexOf("'", this.pos);
    const nl = this.text.indexOf('\n', this.pos);
    if (end < 0 || (nl >= 0 && nl < end)) this.fail('this string has no closing quote');
    const s = this.text.slice(this.pos, end);
    this.pos = end + 1;
    return s;
  }

  end(): void {
    this.skip(false);
    const c = this.text[this.pos];
    if (c === undefined || c === '#' || c === '\n' || c === '\r') return;
    this.fail(
      `unexpected ${this.show(this.text.slice(this.pos).split('\n')[0]!)} after the value (one setting per line; comments start with #)`,
    );
  }
}
