import Foundation
import RelayCore

/// Reads a device's packets as they are stored, on the caller's thread (a recorder's or a proxy's).
/// If the ring dropped packets this reader had not read yet, it resumes at the newest keyframe and
/// says so (`gap`), so a muxer never gets a P-frame without its keyframe.
struct PacketFollower {
  let device: Device
  private(set) var lastIndex: UInt64

  init(device: Device, after index: UInt64) {
    self.device = device
    self.lastIndex = index
  }

  /// The next packets, or nil once `stop` says so (it is asked between waits, with `lastIndex`).
  mutating func next(stop: (UInt64) -> Bool) -> (packets: [StoredPacket], gap: Bool)? {
    while !stop(lastIndex) {
      let (packets, _) = device.packets(after: lastIndex, maxBacklogMs: .max)
      if let first = packets.first, let last = packets.last {
        let gap = first.index != lastIndex + 1
        lastIndex = last.index
        return (packets, gap)
      }
      device.waitForArrivals(after: lastIndex, timeout: 0.1)
    }
    return nil
  }
}
