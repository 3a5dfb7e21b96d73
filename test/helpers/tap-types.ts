import type tap from 'tap'

/** The type of the `t` a tap subtest callback receives, for helpers that take it as a parameter. */
export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0]
