/**
 * `nestjs-msgtrans/redis`: the Redis adapter. A separate entry point so
 * that only applications that use it need the optional `redis` package.
 */
export * from './msgtrans-redis-adapter.js';
