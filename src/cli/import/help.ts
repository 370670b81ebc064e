// Kept apart so `portcullis --help` does not load the importers.
export const IMPORT_HELP = `Usage: portcullis import oauth2-proxy [--config FILE] [--alpha-config FILE] [--from URL]... [--out FILE] [-- FLAGS...]
       portcullis import pomerium FILE [--out FILE]

Writes a Portcullis config (YAML) that behaves like the given oauth2-proxy or Pomerium setup,
then prints every setting it could not carry over and why ("not carried over: <setting> — <why>").

oauth2-proxy: the settings come from its config file (--config, the TOML-style oauth2-proxy.cfg),
OAUTH2_PROXY_* environment variables and oauth2-proxy's own flags after --, with oauth2-proxy's
precedence (flags, then environment, then file). --alpha-config FILE adds oauth2-proxy's alpha
config (YAML: providers, upstreamConfig, injectRequestHeaders/-ResponseHeaders, server,
metricsServer); several providers become idps:. oauth2-proxy answers any host; a Portcullis
route names its own: --from https://app.example.com (repeatable) gives the public URLs,
otherwise they come from redirect_url (with upstreams) or cookie_domains / whitelist_domains.

  --out FILE   write the config there (created with mode 600: it holds secrets), not stdout

Exit status: 0 written (warnings printed), 1 the peer's settings cannot be carried over safely
or the result would not load (nothing written), 2 usage error.`;
