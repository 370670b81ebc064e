// Apart from tcp.ts so that `portcullis --help` does not load the tunnel's modules.
export const TCP_HELP = `Usage: portcullis tcp HOST:PORT [--listen ADDR] [--portcullis-url URL]
                      [--ca-cert FILE] [--disable-tls-verification] [--browser-cmd CMD]

Opens a TCP tunnel through Portcullis to a tcp+https route (from: tcp+https://HOST:PORT).
Each tunnel is one HTTP CONNECT HOST:PORT to Portcullis, judged by the route's policy.

  --listen ADDR          accept connections on ADDR (e.g. 127.0.0.1:5432, or 127.0.0.1:0 for
                         any free port) and tunnel each one; without it, stdin and stdout are
                         the tunnel, as an SSH ProxyCommand uses it:
                           ssh -o ProxyCommand='portcullis tcp %h:%p' user@db.corp.example.com
  --portcullis-url URL   where Portcullis listens (default: $PORTCULLIS_URL, else https://HOST)
  --ca-cert FILE         also trust this CA (PEM) for Portcullis's certificate
  --disable-tls-verification   do not verify Portcullis's certificate (testing only)
  --browser-cmd CMD      run CMD URL to open the sign-in page (default: xdg-open with a desktop)

On first use (or when the session has ended) the sign-in URL is printed on stderr; once the
browser has signed in, the token is kept in $XDG_CACHE_HOME/portcullis/tcp-tokens.json.
Messages go to stderr only: stdout carries the tunnel's bytes.
Exit status: 0 the tunnel ended, 1 refused or unreachable, 2 usage error.`;
