import assert from 'node:assert/strict';

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects if `promise` does not settle within `ms`, so no test can hang. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
    }),
  ]);
}

/** What `promise` rejected with; fails the test if it resolved or hung. */
export async function rejection(promise: Promise<unknown>, ms: number, what: string): Promise<unknown> {
  let value: unknown;
  try {
    value = await within(promise, ms, what);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith(`${what}: not settled`)) throw err;
    return err;
  }
  assert.fail(`${what}: expected a rejection, got ${JSON.stringify(value)}`);
}
