/**
 * api: the HTTP API, the same logic behind API Gateway on AWS and `fanout dev` locally. Routes
 * and handlers (api.ts), request bodies as zod schemas (schemas.ts), the HTTP shapes and the one
 * mapping from fanout errors to statuses (http.ts), and the OpenAPI document (openapi.ts).
 */
export * from './api.ts';
export * from './http.ts';
export * from './openapi.ts';
export * from './schemas.ts';
