// A clock driven by hand, for tests of the one host timer: `fire()` runs
// the armed timer at its time, so whatever it throws reaches the test, and
// `host.armed` lists every time a timer was armed for.

import type { Clock } from "@corio/corio";

export function handClock() {
  const host = {
    now: 0,
    armed: [] as number[],
    pending: null as { at: number; callback: () => void } | null,
  };
  const clock: Clock = {
    now: () => host.now,
    setTimer(at, callback) {
      host.armed.push(at);
      return host.pending = { at, callback };
    },
    clearTimer(handle) {
      if (host.pending === handle) host.pending = null;
    },
  };
  const fire = () => {
    const timer = host.pending!;
    host.pending = null;
    host.now = timer.at;
    timer.callback();
  };
  return { host, clock, fire };
}
