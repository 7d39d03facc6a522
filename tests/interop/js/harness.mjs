// What the transport scripts (transports.mjs, uni_sse.mjs) share: reading the
// environment, one PASS line per check, waiting for events with a deadline,
// and minting subscription tokens the way an application backend would.
//
// The first failing check throws CheckFailed; run() prints it as a FAIL line
// and exits 1. Nothing here sleeps to synchronise: every wait is on an event
// with a deadline.

import { createHmac } from 'node:crypto';
import { inspect } from 'node:util';

// Deadline for any single wait. The harness kills the whole script at 60 s.
export const WAIT_MS = 10_000;
const BUDGET_MS = 55_000;

export class CheckFailed extends Error {}

export function env(name) {
  const value = process.env[name] ?? '';
  if (value === '') {
    throw new CheckFailed(`environment variable ${name} is not set`);
  }
  return value;
}

export function passed(check, detail) {
  console.log(`PASS ${check}: ${detail}`);
}

export function expect(cond, what) {
  if (!cond) {
    throw new CheckFailed(what);
  }
}

export function short(value) {
  const text = inspect(value, { depth: 4, breakLength: Infinity });
  return text.length <= 300 ? text : `${text.slice(0, 300)}...`;
}

// Keeps every event an SDK object emitted, in order, so checks can wait for
// one (with a deadline) and later assert on everything that arrived.
export class Recorder {
  constructor(name) {
    this.name = name;
    this.events = [];
    this.waiters = new Set();
  }

  add(kind, ctx) {
    this.events.push([kind, ctx]);
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }

  // Position after the last event so far: waits from it see only newer ones.
  mark() {
    return this.events.length;
  }

  of(kind, since = 0) {
    return this.events.slice(since).filter(([k]) => k === kind).map(([, ctx]) => ctx);
  }

  // Resolves with the first `count` events of `kind` after `since` that match
  // `pred`; an event of a kind in `failOn` (e.g. "unsubscribed" while waiting
  // for "subscribed") rejects at once, as nothing would come after it.
  wait(what, kind, { pred = () => true, since = 0, count = 1, failOn = [] } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        const found = this.of(kind, since).filter(pred);
        const bad = failOn.flatMap((k) => this.of(k, since).map((ctx) => [k, ctx]));
        if (found.length < count && bad.length === 0) {
          return false;
        }
        clearTimeout(timer);
        this.waiters.delete(check);
        if (found.length >= count) {
          resolve(found.slice(0, count));
        } else {
          reject(new CheckFailed(`${this.name}: got ${bad[0][0]} ${short(bad[0][1])} while waiting for ${what}`));
        }
        return true;
      };
      timer = setTimeout(() => {
        this.waiters.delete(check);
        const found = this.of(kind, since).filter(pred);
        reject(new CheckFailed(
          `timed out after ${WAIT_MS} ms waiting for ${this.name}: ${what} ` +
          `(matching so far: ${short(found)}; events: ${this.summary()})`));
      }, WAIT_MS);
      if (!check()) {
        this.waiters.add(check);
      }
    });
  }

  // The last events, enough to see what happened instead.
  summary() {
    const tail = this.events.slice(-12);
    const skipped = this.events.length - tail.length;
    const head = skipped > 0 ? `(${skipped} earlier) ` : '';
    return head + tail.map(([k, ctx]) => `${k}:${short(ctx)}`).join(', ');
  }
}

// Records the listed events of an EventEmitter-style object (an SDK client or
// subscription).
export function record(emitter, rec, kinds, prefix = '') {
  for (const kind of kinds) {
    emitter.on(kind, (ctx) => {
      if (kind === 'error') {
        console.error(`  [${rec.name}] error event: ${short(ctx)}`);
      }
      rec.add(prefix + kind, ctx);
    });
  }
}

// An HS256 JWT with `claims`, signed with `secret`.
export function hs256(secret, claims) {
  const b64url = (text) => Buffer.from(text).toString('base64url');
  const header = { alg: 'HS256', typ: 'JWT' };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

// A subscription token for `user` on `channel`, valid for 5 minutes.
export function subscriptionToken(secret, user, channel) {
  return hs256(secret, { sub: user, channel, exp: Math.floor(Date.now() / 1000) + 300 });
}

// A promise the script resolves by hand.
export function gate() {
  let open;
  const promise = new Promise((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

// Runs `main` within the script's budget: exit 0 when every check passed, 1
// with a FAIL line otherwise.
export async function run(main) {
  const budget = setTimeout(() => {
    console.log(`FAIL the script ran past its ${BUDGET_MS / 1000} s budget`);
    process.exit(1);
  }, BUDGET_MS);
  budget.unref();
  try {
    await main();
    console.log('all checks passed');
    process.exit(0);
  } catch (e) {
    if (e instanceof CheckFailed) {
      console.log(`FAIL ${e.message}`);
    } else {
      console.log(`FAIL unexpected exception: ${e?.stack ?? short(e)}`);
    }
    process.exit(1);
  }
}
