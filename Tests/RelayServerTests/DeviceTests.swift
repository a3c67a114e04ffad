import Foundation
import RelayCore
import Testing

@testable import RelayServer

private let description = CodecDescription(
  name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))

private func makeDevice() throws -> Device {
  Device(id: try DeviceID(validating: "cam1"), ringLimits: .init(maxBytes: 1 << 20, maxSeconds: 60))
}

private func store(_ device: Device, _ sequence: UInt64, token: UInt64) throws(IngestError) {
  try device.store(
    sequence: sequence, data: Data(count: 10), pts: Int64(sequence), dts: Int64(sequence), isKeyframe: sequence == 1,
    captureTimeMs: 0, token: token)
}

@Suite struct DeviceSessionTests {
  @Test func storesInSequenceAndRefusesGapsAndRepeats() throws {
    let device = try makeDevice()
    let (token, resume) = device.beginSession(id: "s1", codec: description, status: .init())
    #expect(resume == 0)
    for sequence in UInt64(1)...3 { try store(device, sequence, token: token) }
    #expect(throws: IngestError.sequenceWentBackwards(got: 2, lastStored: 3)) { try store(device, 2, token: token) }
    #expect(throws: IngestError.sequenceSkipped(got: 5, expected: 4)) { try store(device, 5, token: token) }
    // Nothing already stored was lost, and the session goes on from 4.
    #expect(device.bufferSummary?.frames == 3)
    try store(device, 4, token: token)
    #expect(device.bufferSummary?.frames == 4)
  }

  @Test func sameSessionResumesAfterItsLastStoredFrame() throws {
    let device = try makeDevice()
    let first = device.beginSession(id: "s1", codec: description, status: .init())
    for sequence in UInt64(1)...5 { try store(device, sequence, token: first.token) }
    let again = device.beginSession(id: "s1", codec: description, status: .init())
    #expect(again.resumeAfter == 5)
    let other = device.beginSession(id: "s2", codec: description, status: .init())
    #expect(other.resumeAfter == 0)
  }

  @Test func aNewSessionTakesTheDeviceOver() throws {
    let device = try makeDevice()
    let old = device.beginSession(id: "s1", codec: description, status: .init())
    try store(device, 1, token: old.token)
    let new = device.beginSession(id: "s2", codec: description, status: .init())
    #expect(throws: IngestError.takenOver(device: "cam1")) { try store(device, 2, token: old.token) }
    try store(device, 1, token: new.token)
    #expect(device.bufferSummary?.frames == 2)
  }

  @Test func clockOffsetMovesCaptureTimesOntoTheServerClock() throws {
    let device = try makeDevice()
    let (token, _) = device.beginSession(id: "s1", codec: description, status: .init())
    device.setClockOffset(5_000, token: token)
    try device.store(
      sequence: 1, data: Data(count: 1), pts: 0, dts: 0, isKeyframe: true, captureTimeMs: 1_000_000, token: token)
    #expect(device.bufferSummary?.startMs == 1_005_000)
  }
}
