import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The reserved extension-header entry that carries a request's remaining
 * time budget: whole milliseconds, relative, so the two ends' clocks need not
 * agree (docs/PROTOCOL.md, "Deadlines"). It never reaches `ctx.getMetadata()`.
 */
export const TIMEOUT_METADATA_KEY = 'msgtrans-timeout';

// Largest budget honoured: what a Node timer can wait (about 24.8 days).
const MAX_BUDGET = 2_147_483_647;

/**
 * The deadline (ms since the epoch) of the request being handled, for the
 * calls a handler makes: they inherit what is left of it.
 */
export const deadlineStorage = new AsyncLocalStorage<number>();

let inheritable = false;

/**
 * Called when a MsgTransClient is made: from then on handlers run inside
 * {@link deadlineStorage}, so their calls can inherit the deadline. Until
 * then nothing could inherit it, and a server skips AsyncLocalStorage
 * entirely: on Node 20 its first use turns on async hooks for every promise
 * in the process, a cost a service that calls no other service should not pay.
 */
export function enableDeadlineInheritance(): void {
  inheritable = true;
}

/** True once a client exists to inherit deadlines. */
export function deadlinesInheritable(): boolean {
  return inheritable;
}

/** The deadline of the request being handled in this async context, if any. */
export function currentDeadline(): number | undefined {
  return deadlineStorage.getStore();
}

/**
 * A budget as sent: a positive integer of ms, else undefined (an entry that
 * is malformed is ignored, as if the caller had sent none).
 */
export function parseBudget(value: string | undefined): number | undefined {
  if (value === undefined || value.length === 0 || value.length > 10) return undefined;
  const ms = Number(value);
  return Number.isInteger(ms) && ms > 0 ? Math.min(ms, MAX_BUDGET) : undefined;
}

/**
 * Takes the budget entry out of a request's metadata (handlers see only
 * their own entries); undefined metadata once nothing else is left.
 */
export function takeBudget(message: { metadata: Record<string, string> | undefined }): number | undefined {
  const metadata = message.metadata;
  if (metadata === undefined || !Object.hasOwn(metadata, TIMEOUT_METADATA_KEY)) return undefined;
  const budget = parseBudget(metadata[TIMEOUT_METADATA_KEY]);
  let others = false;
  for (const key in metadata) {
    if (key !== TIMEOUT_METADATA_KEY) {
      others = true;
      break;
    }
  }
  // the common case, the budget alone: no delete (it would slow the object down for nothing)
  if (others) delete metadata[TIMEOUT_METADATA_KEY];
  else message.metadata = undefined;
  return budget;
}
