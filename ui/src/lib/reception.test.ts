import { describe, expect, it } from 'vitest';
import { receptionLabel, receptionMark } from './reception';

describe('the reception mark', () => {
  it('lights three bars for good, two for fair, one for poor', () => {
    expect(receptionMark('good')).toEqual({ bars: 3, label: 'Reception: good' });
    expect(receptionMark('fair')).toEqual({ bars: 2, label: 'Reception: fair' });
    expect(receptionMark('poor')).toEqual({ bars: 1, label: 'Reception: poor' });
  });

  it('says the level in words', () => {
    expect(receptionLabel('poor')).toBe('Reception: poor');
  });
});
