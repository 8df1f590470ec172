// A certified OpenID provider (panva/oidc-provider) configured for tokenkeeper's interop suite
// (crates/tokenkeeper/tests/oidc_interop.rs) and the `oidc` example. Started by scripts/oidc.sh;
// never for production: development interactions accept any login and password.
//
//   node provider.mjs            listens on 127.0.0.1:$TOKENKEEPER_OIDC_PORT (default 6392)
//   TOKENKEEPER_OIDC_DPOP=1 node provider.mjs
//                                the DPoP instance (scripts/oidc.sh runs it on port 6394): the
//                                same clients, plus the public DPoP clients of dpop_oidc.rs
//
// What the suite relies on:
// - authorization code + PKCE through the development login and consent forms;
// - refresh-token rotation on every refresh, reuse of a rotated token revokes the grant;
// - client_credentials;
// - resource indicators: every access token is a JWT (RS256) for the API `RESOURCE`, living
//   `DEFAULT_TTL` seconds (changeable per client through `POST /__ttl`);
// - revocation; client authentication by client_secret_basic, client_secret_post and
//   private_key_jwt (RS256 and ES256 keys in ./keys, whose private halves the tests sign with).
//
// The DPoP instance (TOKENKEEPER_OIDC_DPOP=1; crates/tokenkeeper/tests/it/dpop_oidc.rs) adds
// public clients (`token_endpoint_auth_method: none`) with `dpop_bound_access_tokens`: their
// access tokens carry `cnf.jkt`, and so do their refresh tokens (oidc-provider binds a refresh
// token to the DPoP key for public clients only). It hands out DPoP nonces (`nonceSecret`) and
// requires one at the token endpoint from the clients in `NONCE_CLIENTS`. The Bearer instance
// keeps oidc-provider's DPoP defaults (enabled, no nonces) and has none of these clients.
//
// Two test-only routes, handled before the provider sees the request:
// - `GET /__stats?client_id=X`: what the token endpoint answered that client, counted here, at
//   the provider, for every request that reached it: `{"token_requests": {grant_type: {status:
//   count}}, "token_errors": {grant_type: {error: count}}, "reuse_detections": n,
//   "revocations": n}` (`token_errors` tells a DPoP nonce demand, `use_dpop_nonce`, from a
//   refusal of the grant, `invalid_grant`).
// - `POST /__ttl?client_id=X&seconds=N`: the lifetime of the access tokens issued to that client
//   from now on (the reference server's `set_access_ttl`, for tests that must let only the first
//   token expire however slow the machine is).

import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider, { errors } from 'oidc-provider';

const here = dirname(fileURLToPath(import.meta.url));
const port = Number(process.env.TOKENKEEPER_OIDC_PORT || 6392);
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;
const dpopInstance = process.env.TOKENKEEPER_OIDC_DPOP === '1';

/** The API the access tokens are for (the suite's resource server checks `aud`). */
export const RESOURCE = 'urn:tokenkeeper:interop-api';
const DEFAULT_TTL = 2;
const REDIRECT_URI = 'https://client.tokenkeeper.invalid/callback';
/** Exercises RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. */
const SECRET = 'tk secret: with +/%&= reserved chars';

function publicJwk(file) {
  const jwk = createPublicKey(readFileSync(join(here, 'keys', file))).export({ format: 'jwk' });
  return { ...jwk, use: 'sig', kid: file.replace(/\.pem$/, '') };
}

const secretClient = (id, method) => ({
  client_id: id,
  client_secret: SECRET,
  token_endpoint_auth_method: method,
});
const keyClient = (id, file, alg) => ({
  client_id: id,
  token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: alg,
  jwks: { keys: [publicJwk(file)] },
});

// One client per test that counts at the provider, so tests running at once never see each
// other's requests in /__stats.
const clients = [
  secretClient('tk-basic', 'client_secret_basic'),
  secretClient('tk-post', 'client_secret_post'),
  keyClient('tk-jwt-rs256', 'client-rs256.pem', 'RS256'),
  keyClient('tk-jwt-es256', 'client-es256.pem', 'ES256'),
  secretClient('tk-burst', 'client_secret_basic'),
  secretClient('tk-burst-reactive', 'client_secret_basic'),
  secretClient('tk-wrong', 'client_secret_basic'),
  secretClient('tk-late', 'client_secret_basic'),
  secretClient('tk-revoke', 'client_secret_basic'),
  secretClient('tk-processes', 'client_secret_basic'),
  secretClient('tk-m2m-burst', 'client_secret_basic'),
  secretClient('tk-m2m-loop', 'client_secret_post'),
  keyClient('tk-m2m-jwt', 'client-es256.pem', 'ES256'),
  secretClient('tk-example', 'client_secret_basic'),
  secretClient('tk-example-m2m', 'client_secret_basic'),
].map((client) => ({
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
  scope: 'openid offline_access api:read api:write',
  ...client,
}));

/** DPoP clients whose token requests must carry a nonce (`use_dpop_nonce` otherwise). */
const NONCE_CLIENTS = new Set(['tk-dpop-nonce']);
// Public clients (no secret: the DPoP key is their only proof), one per test that counts.
const dpopClients = [
  'tk-dpop-burst',
  'tk-dpop-burst-proactive',
  'tk-dpop-burst-api-nonce',
  'tk-dpop-nonce',
  'tk-dpop-api-nonce',
  'tk-dpop-stolen',
  'tk-dpop-refresh-bound',
  'tk-dpop-tower',
].map((id) => ({
  client_id: id,
  token_endpoint_auth_method: 'none',
  dpop_bound_access_tokens: true,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
  scope: 'openid offline_access api:read api:write',
}));
// A confidential client whose client-credentials tokens are DPoP-bound.
dpopClients.push({
  ...secretClient('tk-dpop-m2m', 'client_secret_basic'),
  dpop_bound_access_tokens: true,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'api:read api:write',
});
if (dpopInstance) clients.push(...dpopClients);

const ttls = new Map();
const stats = new Map();
function statsFor(clientId) {
  if (!stats.has(clientId)) {
    stats.set(clientId, {
      token_requests: {}, token_errors: {}, reuse_detections: 0, revocations: 0,
    });
  }
  return stats.get(clientId);
}

// The provider's own signing key, fresh at every start: the resource server reads the JWKS.
const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [{ ...signing, kid: `tk-${Date.now()}`, use: 'sig', alg: 'RS256' }] },
  cookies: { keys: ['tokenkeeper interop, development only'] },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt',
    ...(dpopInstance ? ['none'] : [])],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'api:read', 'api:write'],
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: async () => ({ sub }) };
  },
  // A refresh token for every code grant of a client allowed to refresh, `offline_access` or not.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  // scripts/oidc.sh tells the DPoP instance by this member: a provider of an older
  // configuration answering on its port is not taken for it.
  ...(dpopInstance
    ? { discovery: { claim_types_supported: ['normal'], tokenkeeper_instance: 'dpop' } }
    : {}),
  features: {
    devInteractions: { enabled: true },
    dPoP: dpopInstance
      ? {
        enabled: true,
        // Fresh at every start, like the signing key: nonces are HKDF(secret, minute).
        nonceSecret: randomBytes(32),
        requireNonce: (ctx) => NONCE_CLIENTS.has(ctx.oidc?.client?.clientId),
      }
      : { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator, client) => {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'api:read api:write',
          audience: RESOURCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttls.get(client.clientId) ?? DEFAULT_TTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

// The token endpoint's errors say only "grant request is invalid"; the detail tells reuse.
provider.on('grant.error', (ctx, error) => {
  const id = ctx.oidc?.client?.clientId;
  if (id && error.error_detail === 'refresh token already used') {
    statsFor(id).reuse_detections += 1;
  }
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/__stats' && ctx.method === 'GET') {
    ctx.body = statsFor(ctx.query.client_id || '');
    return;
  }
  if (ctx.path === '/__ttl' && ctx.method === 'POST') {
    const seconds = Number(ctx.query.seconds);
    if (!ctx.query.client_id || !Number.isInteger(seconds) || seconds < 1) {
      ctx.status = 400;
      ctx.body = { error: 'client_id and a positive integer seconds are required' };
      return;
    }
    ttls.set(ctx.query.client_id, seconds);
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST') {
    const id = ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id ?? 'unknown';
    const grant = ctx.oidc?.params?.grant_type ?? 'unknown';
    const byStatus = (statsFor(id).token_requests[grant] ??= {});
    byStatus[ctx.status] = (byStatus[ctx.status] ?? 0) + 1;
    const error = ctx.status >= 400 ? ctx.body?.error : undefined;
    if (typeof error === 'string') {
      const byError = (statsFor(id).token_errors[grant] ??= {});
      byError[error] = (byError[error] ?? 0) + 1;
    }
  }
  if (ctx.path === '/token/revocation' && ctx.method === 'POST' && ctx.status === 200) {
    const id = ctx.oidc?.client?.clientId;
    if (id) statsFor(id).revocations += 1;
  }
});

provider.listen(port, host, () => {
  console.error(`oidc-provider listening, issuer ${issuer}${dpopInstance ? ' (DPoP instance)' : ''}`);
});
