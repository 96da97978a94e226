// How the stage is laid out and who is emphasised: pure functions of the tile count, the
// available area and the audio levels, so the rules are unit-tested without a browser.

import type { Participant, Session } from './types';
import { everyone } from './stage';

export interface Grid {
  columns: number;
  rows: number;
  /** Size of one tile in pixels, 16:9, fitting the area with the gaps. */
  tileWidth: number;
  tileHeight: number;
  /** True when the rows do not all fit and the stage scrolls. */
  scroll: boolean;
}

export const ASPECT = 16 / 9;
export const MAX_COLUMNS = 4;

/** Columns for a count: 1, 2 side by side, 2x2 up to four, 3x3 up to nine, then 4 wide. */
export function columnsFor(count: number): number {
  if (count <= 1) return 1;
  if (count <= 4) return 2;
  if (count <= 9) return 3;
  return MAX_COLUMNS;
}

/** The grid for `count` tiles in a `width` x `height` area, tiles kept at 16:9. */
export function gridFor(count: number, width: number, height: number, gap = 8): Grid {
  const n = Math.max(1, Math.floor(count));
  const columns = columnsFor(n);
  const rows = Math.ceil(n / columns);
  const w = Math.max(0, width);
  const h = Math.max(0, height);
  // Beyond nine the grid scrolls: only three rows are fitted to the height.
  const fittedRows = Math.min(rows, 3);
  const byWidth = Math.max(0, (w - gap * (columns - 1)) / columns);
  const byHeight = Math.max(0, (h - gap * (fittedRows - 1)) / fittedRows);
  const tileWidth = Math.floor(Math.min(byWidth, byHeight * ASPECT));
  const tileHeight = Math.floor(tileWidth / ASPECT);
  return { columns, rows, tileWidth, tileHeight, scroll: rows > fittedRows };
}

/** Level (0..1) above which someone counts as speaking. */
export const SPEAK_THRESHOLD = 0.15;
/** A newcomer must be this much louder than the current speaker to take the emphasis. */
export const SWITCH_MARGIN = 0.05;
/** The emphasis stays this long (ms) after the speaker falls below the threshold. */
export const HOLD_MS = 1200;

export interface SpeakerState {
  key: string | null;
  /** When the current speaker was last above the threshold. */
  lastLoud: number;
}

export const NO_SPEAKER: SpeakerState = { key: null, lastLoud: 0 };

/**
 * The active speaker after a new set of levels, with hysteresis: the loudest key above the
 * threshold, but the current one is kept unless another is louder by SWITCH_MARGIN, and it
 * stays for HOLD_MS after falling silent, so the border does not flicker.
 */
export function nextSpeaker(
  prev: SpeakerState,
  levels: Readonly<Record<string, number>>,
  candidates: readonly string[],
  now: number,
): SpeakerState {
  let loudest: string | null = null;
  let loudestLevel = 0;
  for (const k of candidates) {
    const l = levels[k] ?? 0;
    if (l > SPEAK_THRESHOLD && l > loudestLevel) {
      loudest = k;
      loudestLevel = l;
    }
  }
  const current = prev.key !== null && candidates.includes(prev.key) ? prev.key : null;
  if (current === null) return loudest ? { key: loudest, lastLoud: now } : NO_SPEAKER;
  const currentLevel = levels[current] ?? 0;
  const currentLoud = currentLevel > SPEAK_THRESHOLD;
  if (loudest && loudest !== current && (!currentLoud || loudestLevel > currentLevel + SWITCH_MARGIN)) {
    return { key: loudest, lastLoud: now };
  }
  if (currentLoud) return { key: current, lastLoud: now };
  if (now - prev.lastLoud < HOLD_MS) return prev;
  return NO_SPEAKER;
}

export interface AudienceRow {
  user_id: string;
  name: string;
  requested: boolean;
  isMe: boolean;
}

export interface MeetingHeader {
  title: string;
  hosts: string[];
  onStage: string[];
  audience: AudienceRow[];
  audienceText: string;
}

function isHost(p: Participant): boolean {
  return p.preset === 'host';
}

/** What everyone sees above the stage: title, host(s), who is on stage and the audience. */
export function meetingHeader(s: Session): MeetingHeader {
  const all = everyone(s).filter((p) => p.connected || p.user_id === s.me.user_id);
  const onStage = all.filter((p) => p.stage_status === 'ON_STAGE' || p.stage_status === 'ACCEPTED_TO_JOIN_STAGE');
  const audience = all
    .filter((p) => p.stage_status === 'OFF_STAGE' || p.stage_status === 'REQUESTED_TO_JOIN_STAGE')
    .map((p) => ({
      user_id: p.user_id,
      name: p.name,
      requested: p.stage_status === 'REQUESTED_TO_JOIN_STAGE',
      isMe: p.user_id === s.me.user_id,
    }))
    // Requesters first, then by name, so the list reads like a stage's listeners.
    .sort((a, b) => Number(b.requested) - Number(a.requested) || a.name.localeCompare(b.name));
  return {
    // A server that sends no title: the id still tells meetings apart.
    title: s.title || s.meeting_id,
    hosts: all.filter(isHost).map((p) => p.name),
    onStage: onStage.map((p) => p.name),
    audience,
    audienceText: `Audience · ${audience.length}`,
  };
}
