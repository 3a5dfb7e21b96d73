import type { RelayStore } from '../store/relay-store.js'

/**
 * What the sync engine needs from a store. RelayStore (PostgreSQL/PGlite) is the production implementation;
 * MemorySyncStore serves the property tests and the decision benchmark. Both pass the same contract tests.
 */
export type SyncStore = Pick<
  RelayStore,
  | 'listPeople'
  | 'listEndpoints'
  | 'listTeamsSessions'
  | 'listPersonSync'
  | 'listGateways'
  | 'updateEndpointState'
  | 'resetEndpointSeqAbove'
  | 'upsertPerson'
  | 'setPersonGraphUser'
  | 'upsertEndpointDirectory'
  | 'upsertTeamsSession'
  | 'deleteTeamsSession'
  | 'upsertPersonSync'
  | 'appendEvent'
  | 'setPersonSyncMode'
  | 'setPersonSettingsOverride'
>
