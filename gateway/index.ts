export { ReferenceGateway, DEFAULT_MAX_BLOCK_BYTES, type GatewayOptions } from './gateway.js'
export { NO_FAULTS, faultsSchema, parseFaults, type Faults, type FaultsInput } from './faults.js'
export { BlockStore } from './store.js'
export { gatewayCommand, GATEWAY_USAGE } from './command.js'
