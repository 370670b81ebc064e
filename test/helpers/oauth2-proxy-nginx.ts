// oauth2-proxy's own nginx auth_request setup, as its Integration page documents it
// (https://oauth2-proxy.github.io/oauth2-proxy/configuration/integration, versions 7.10.x to
// 7.13.x): a `/oauth2/` location (Host, X-Real-IP, X-Auth-Request-Redirect $request_uri), an exact
// `/oauth2/auth` location (Host, X-Real-IP, X-Forwarded-Uri $request_uri, empty Content-Length,
// no request body), a named location answering 302 to `/oauth2/sign_in?rd=...`, and
// `auth_request` + `error_page 401` + `auth_request_set ... $upstream_http_x_auth_request_*` in the
// protected location. One substitution: `$host` becomes `$http_host`, because nginx's $host drops
// the port and these tests cannot listen on 80; deployments on 80/443 see the same values.

/**
 * The server block for app.corp.test on `port`, with the auth server (oauth2-proxy's address,
 * Portcullis here) on `auth` and the application on `upstream`. `groups` also passes
 * X-Auth-Request-Groups on, the way ingress-nginx's auth-response-headers do.
 */
export function oauth2ProxyNginx(o: {
  port: number;
  auth: number;
  upstream: number;
  groups?: boolean;
}): string {
  const authServer = `http://127.0.0.1:${o.auth}`;
  const groups = o.groups
    ? `
    # Beyond the page's two: groups, passed on the way ingress-nginx's auth-response-headers do.
    auth_request_set $groups $upstream_http_x_auth_request_groups;
    proxy_set_header X-Auth-Request-Groups $groups;`
    : '';
  return `
server {
  listen 127.0.0.1:${o.port};
  server_name app.corp.test;

  location /oauth2/ {
    proxy_pass ${authServer};
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Auth-Request-Redirect $request_uri;
  }
  location = /oauth2/auth {
    proxy_pass ${authServer};
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Uri $request_uri;
    proxy_set_header Content-Length "";
    proxy_pass_request_body off;
  }
  location @oauth2_signin {
    return 302 /oauth2/sign_in?rd=$scheme://$http_host$request_uri;
  }
  location / {
    auth_request /oauth2/auth;
    error_page 401 = @oauth2_signin;
    auth_request_set $user $upstream_http_x_auth_request_user;
    auth_request_set $email $upstream_http_x_auth_request_email;
    proxy_set_header X-User $user;
    proxy_set_header X-Email $email;${groups}
    auth_request_set $auth_cookie $upstream_http_set_cookie;
    add_header Set-Cookie $auth_cookie;
    proxy_pass http://127.0.0.1:${o.upstream};
  }
}
`;
}
