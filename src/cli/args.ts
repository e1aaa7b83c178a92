import { parseArgs, type ParseArgsConfig } from 'node:util';
import { coerceError, UsageError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export const commonOptions = {
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export interface Parsed<T extends Options> {
  values: { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string } & { config?: string; help?: boolean };
  positionals: string[];
}

export function parseCommand<T extends Options>(argv: string[], options: T): Parsed<T> {
  try {
    const parsed = parseArgs({ args: argv, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
    return parsed as unknown as Parsed<T>;
  } catch (error) {
    throw new UsageError(coerceError(error).message);
  }
}

export function expectPositionals(positionals: string[], names: string[]): string[] {
  if (positionals.length !== names.length) {
    throw new UsageError(
      `expected ${names.length ? names.map((n) => n.toUpperCase()).join(' ') : 'no arguments'}, got ${positionals.length} argument(s)`,
    );
  }
  return positionals;
}

export function parseWholeNumber(value: string, what: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw new UsageError(`${what} must be a positive whole number`);
  return Number(value);
}

// A whole number that may be 0 (seconds, counts); undefined when the option was not given.
export function parseWholeOrZero(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  return value === '0' ? 0 : parseWholeNumber(value, what);
}
