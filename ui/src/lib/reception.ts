// The reception mark on a stage tile: three signal bars, as many lit as the reception is
// good, and the words a screen reader says for it.

import type { Reception } from './types';

export interface ReceptionMark {
  /** The bars lit of three: 3 good, 2 fair, 1 poor. */
  bars: 1 | 2 | 3;
  /** E.g. "Reception: poor". */
  label: string;
}

const BARS: Record<Reception, ReceptionMark['bars']> = { good: 3, fair: 2, poor: 1 };

export function receptionLabel(level: Reception): string {
  return `Reception: ${level}`;
}

export function receptionMark(level: Reception): ReceptionMark {
  return { bars: BARS[level], label: receptionLabel(level) };
}
