// A real OpenID provider (panva's oidc-provider, a certified implementation) on loopback, for the
// ai-mcp-oauth2 interoperability tests in tests/interop/. Nothing here is a mock: tokens, discovery,
// JWKS, introspection and revocation are oidc-provider's own; the only code of ours is the
// configuration, a small RFC 8693 token-exchange grant registered through its grant-type API, and
// an interaction endpoint that logs a fixed user in and consents to whatever is asked (the user of
// the authorization-code tests, who always says yes).
//
//   node server.mjs --port N [--jwks FILE] [--scoped-resource URL ...] [--dpop]
//
// Issuer http://127.0.0.1:N. Signing keys (RS256 and ES256) are generated at start, or read from
// FILE (a JWKS of private JWKs with kid and alg) so a test can restart the provider with a rotated
// key set under the same issuer. Prints "listening <issuer>" on stdout once it accepts connections.
//
// --scoped-resource URL adds a resource server whose scopes are SCOPED_RESOURCE_SCOPES (the
// per-operation scope tests run their gateway on a free port, so its resource is only known then).
// Each authorization request and each consent is printed on stdout as a line
// "interop-event {json}", so a test can see what the provider was asked and what it granted.
//
// --dpop turns on oidc-provider's DPoP feature (RFC 9449, features.dPoP): a token request with a
// DPoP proof gets a DPoP-bound token (token_type DPoP) whose thumbprint is the JWT access token's
// cnf.jkt claim, or the cnf.jkt member of an opaque token's introspection answer; a token request
// without a proof still gets a bearer token. Proofs may use DPOP_ALGS.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    jwks: { type: 'string' },
    'scoped-resource': { type: 'string', multiple: true },
    dpop: { type: 'boolean', default: false },
  },
  strict: true,
});
const port = Number.parseInt(args.port ?? '', 10);
if (!(port > 0 && port < 65536)) {
  process.stderr.write('usage: node server.mjs --port N [--jwks FILE] [--scoped-resource URL ...] [--dpop]\n');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// Resource servers this provider issues tokens for (RFC 8707 resource indicators; for token
// exchange also RFC 8693 audience values). Anything else is invalid_target.
const RESOURCE_SERVERS = new Set([
  'http://localhost:8000/mcp', // the MCP server behind the gateway in the tests
  'http://localhost:8000/other', // another MCP server: its tokens must not be accepted by the first
  'http://localhost:8000/services/x/mcp', // an MCP server behind a path prefix (RFC 9728 §3.3 tests)
  'https://upstream-mcp.internal', // the upstream audience of exchanged tokens
]);
// Resource servers with per-operation scopes (a read-only tool set and an admin tool).
const SCOPED_RESOURCE_SCOPES = 'mcp:read mcp:admin';
const SCOPED_RESOURCES = new Set(args['scoped-resource'] ?? []);

// Static clients, all authenticating with client_secret_basic. Each name says what it is for.
const SECRET = (id) => `${id}-secret`;
const clientCredentials = (id) => ({
  client_id: id,
  client_secret: SECRET(id),
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
});
const CLIENTS = [
  clientCredentials('mcp-client'), // JWT access tokens, RS256
  clientCredentials('mcp-client-es'), // JWT access tokens, ES256
  clientCredentials('opaque-client'), // opaque access tokens (introspection)
  clientCredentials('short-client'), // JWT access tokens living SHORT_TTL seconds
  { ...clientCredentials('gateway'), grant_types: [] }, // the gateway: introspection only
  { ...clientCredentials('exchanger'), grant_types: [TOKEN_EXCHANGE] }, // the gateway: token exchange
  { // an MCP client app: authorization code with PKCE, redirected to a loopback URI (RFC 8252 §7.3)
    client_id: 'mcp-app',
    client_secret: SECRET('mcp-app'),
    application_type: 'native',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
];
const SHORT_TTL = 2;
const TTL = 600;
// The algorithms of DPoP proofs at the token endpoint with --dpop (oidc-provider's default is ES256 and EdDSA).
const DPOP_ALGS = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'];

function resourceServerInfo(resource, clientId) {
  return {
    scope: SCOPED_RESOURCES.has(resource) ? SCOPED_RESOURCE_SCOPES : 'mcp:tools',
    audience: resource,
    accessTokenTTL: clientId === 'short-client' ? SHORT_TTL : TTL,
    accessTokenFormat: clientId === 'opaque-client' ? 'opaque' : 'jwt',
    jwt: { sign: { alg: clientId === 'mcp-client-es' ? 'ES256' : 'RS256' } },
  };
}

async function signingKeys() {
  if (args.jwks) {
    const { keys } = JSON.parse(readFileSync(args.jwks, 'utf8'));
    for (const key of keys) {
      if (!key.kid || !key.alg || !key.d) throw new Error(`${args.jwks}: every key needs kid, alg and its private part`);
    }
    return keys;
  }
  const keys = [];
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
    const jwk = await jose.exportJWK(privateKey);
    keys.push({ ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(6).toString('base64url')}` });
  }
  return keys;
}

const keys = await signingKeys();
const publicKeys = jose.createLocalJWKSet({
  keys: keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub), // eslint-disable-line no-unused-vars
});

// The claims an exchanged token carries beyond oidc-provider's own (sub of the subject, act),
// handed from the grant handler to the JWT customizer with the token model they belong to.
const exchanged = new WeakMap();

const provider = new Provider(issuer, {
  clients: CLIENTS,
  jwks: { keys },
  scopes: ['openid', 'mcp:tools'],
  cookies: { keys: ['interop-tests-only-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: args.dpop },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, resource, client) => {
        if (!RESOURCE_SERVERS.has(resource) && !SCOPED_RESOURCES.has(resource)) throw new errors.InvalidTarget();
        return resourceServerInfo(resource, client.clientId);
      },
    },
  },
  ...(args.dpop ? { enabledJWA: { dPoPSigningAlgValues: DPOP_ALGS } } : {}),
  formats: {
    customizers: {
      async jwt(ctx, token, jwt) {
        const claims = exchanged.get(token);
        if (claims) Object.assign(jwt.payload, claims);
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
  },
});

// ---- RFC 8693 token exchange -----------------------------------------------------------------

// The subject and actor tokens must be access tokens this provider issued and that are still
// valid: a JWT access token is verified against our keys (JWT access tokens are not stored), an
// opaque one is looked up (so a revoked or expired one is not found). Returns the token's sub.
async function verifyAccessToken(value, name) {
  if (typeof value !== 'string' || value.length === 0) {
    throw new errors.InvalidRequest(`${name} is missing`);
  }
  if (value.split('.').length === 3) {
    try {
      const { payload } = await jose.jwtVerify(value, publicKeys, {
        issuer, typ: 'at+jwt', algorithms: ['RS256', 'ES256'], requiredClaims: ['exp', 'sub'],
      });
      return payload.sub;
    } catch {
      throw new errors.InvalidGrant(`${name} is invalid`);
    }
  }
  const token = await provider.AccessToken.find(value) ?? await provider.ClientCredentials.find(value);
  if (!token?.isValid) throw new errors.InvalidGrant(`${name} is invalid`);
  return token.accountId ?? token.clientId;
}

function list(value) {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (!params.subject_token || !params.subject_token_type) {
    throw new errors.InvalidRequest('subject_token and subject_token_type are required');
  }
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (params.requested_token_type !== undefined
      && ![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.requested_token_type)) {
    throw new errors.InvalidRequest('unsupported requested_token_type');
  }
  if ((params.actor_token === undefined) !== (params.actor_token_type === undefined)) {
    throw new errors.InvalidRequest('actor_token and actor_token_type go together');
  }
  if (params.actor_token !== undefined && params.actor_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported actor_token_type');
  }
  const targets = [...new Set([...list(params.audience), ...list(params.resource)])];
  if (targets.length !== 1) {
    throw new errors.InvalidTarget('exactly one audience or resource is required');
  }
  const [target] = targets;
  if (!RESOURCE_SERVERS.has(target)) throw new errors.InvalidTarget();

  const sub = await verifyAccessToken(params.subject_token, 'subject_token');
  const actor = params.actor_token === undefined
    ? undefined : await verifyAccessToken(params.actor_token, 'actor_token');

  const info = { ...resourceServerInfo(target, client.clientId), accessTokenFormat: 'jwt' };
  const allowed = new Set(info.scope.split(' '));
  const scope = (params.scope ?? '').split(' ').filter((s) => allowed.has(s)).join(' ') || undefined;
  const token = new provider.ClientCredentials({ client, scope });
  token.resourceServer = new provider.ResourceServer(target, info);
  ctx.oidc.entity('ClientCredentials', token);
  exchanged.set(token, { sub, ...(actor === undefined ? {} : { act: { sub: actor } }) });
  const value = await token.save();
  ctx.body = {
    access_token: value,
    // RFC 8693 §2.2.1 and §3: what was requested (a JWT access token is a JWT), issued as an access token
    issued_token_type: params.requested_token_type ?? ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
  };
}

provider.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
    'audience', 'resource', 'scope'],
  ['audience', 'resource'],
);

// ---- authorization requests: a fixed user who logs in and consents to everything asked ----------

const USER = 'interop-user';

function event(name, fields) {
  process.stdout.write(`interop-event ${JSON.stringify({ event: name, ...fields })}\n`);
}

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    const { client_id: client, scope, resource } = ctx.query;
    event('authorization', { client, scope, resource });
    return next();
  }
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (ctx.method !== 'GET' || !match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== match[1]) throw new errors.InvalidRequest('interaction mismatch');
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: USER } };
  } else if (details.prompt.name === 'consent') {
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
      event('consent', { client: details.params.client_id, resource, scope: scopes.join(' ') });
    }
    const grantId = await grant.save();
    result = { consent: details.grantId ? {} : { grantId } };
  } else {
    throw new errors.InvalidRequest(`unexpected prompt ${details.prompt.name}`);
  }
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
});

// ---- serve ---------------------------------------------------------------------------------------

provider.on('server_error', (ctx, error) => process.stderr.write(`server_error: ${error.stack}\n`));

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
