import Foundation
import Media
import Testing

/// PictureBuffers hands a buffer out again only once no Data holds it, and keeps only buffers of the
/// size asked for last, at most `keep` of them.
@Suite struct PictureBuffersTests {
  private func address(_ data: Data) -> UInt {
    data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
  }

  @Test func aReleasedBufferIsReused() throws {
    let buffers = PictureBuffers(keep: 2)
    var first: Data? = buffers.data(count: 4096) { _ = memset($0, 1, 4096) }
    let firstAddress = address(try #require(first))
    first = nil
    #expect(buffers.freeCount == 1)
    let second = try #require(buffers.data(count: 4090) { _ = memset($0, 2, 4090) })  // the same 4 KiB class
    #expect(address(second) == firstAddress)
    #expect(second.count == 4090 && second.allSatisfy { $0 == 2 })
    withExtendedLifetime(second) { #expect(buffers.freeCount == 0) }
  }

  @Test func aBufferStillHeldIsNeverHandedOut() throws {
    let buffers = PictureBuffers(keep: 2)
    let held = try #require(buffers.data(count: 1000) { _ = memset($0, 7, 1000) })
    let copy = held  // a Data copy shares the buffer: still held
    var others: [Data] = []
    for value in 0..<5 {
      others.append(try #require(buffers.data(count: 1000) { _ = memset($0, Int32(value), 1000) }))
    }
    #expect(held.allSatisfy { $0 == 7 } && copy.allSatisfy { $0 == 7 })
    #expect(Set(([held] + others).map(address)).count == 6)
    for (value, data) in others.enumerated() { #expect(data.allSatisfy { $0 == UInt8(value) }) }
    others.removeAll()
    #expect(buffers.freeCount == 2)  // five came back, two are kept
  }

  @Test func aNewSizeLetsTheOldBuffersGo() throws {
    let buffers = PictureBuffers()
    var small: Data? = buffers.data(count: 100) { _ = memset($0, 0, 100) }
    small = nil
    #expect(buffers.freeCount == 1)
    var large: Data? = buffers.data(count: 5000) { _ = memset($0, 0, 5000) }  // the next class
    withExtendedLifetime(large) { #expect(buffers.freeCount == 0) }
    large = nil
    #expect(buffers.freeCount == 1)
    _ = (small, large)
  }

  @Test func aFailedFillGivesTheBufferBack() throws {
    struct Failed: Error {}
    let buffers = PictureBuffers()
    #expect(throws: Failed.self) { _ = try buffers.data(count: 64) { _ throws(Failed) in throw Failed() } }
    #expect(buffers.freeCount == 1)
  }
}
