import t from 'tap'
import { contractSuite } from './contract.js'
import { memoryHarness } from './harness.js'

contractSuite(t, memoryHarness())
