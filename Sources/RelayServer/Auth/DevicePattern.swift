import Foundation

/// A device id glob: `cam-*`, `site1-*`, `door-?` (fnmatch rules; device ids hold no `/`).
public struct DevicePattern: Sendable, Hashable, CustomStringConvertible {
  public let text: String

  public init(_ text: String) { self.text = text }

  public func matches(_ device: String) -> Bool { fnmatch(text, device, 0) == 0 }

  public var description: String { text }
}
