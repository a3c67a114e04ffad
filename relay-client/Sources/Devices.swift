import ArgumentParser
import Foundation
import Media

struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List V4L2 cameras with their driver, name, formats, sizes and frame rates.")

  @Argument(help: "Device paths (default: every /dev/video*).")
  var paths: [String] = []

  func run() throws {
    let paths = self.paths.isEmpty ? Self.videoDevices() : self.paths
    if paths.isEmpty {
      print("no V4L2 devices: nothing matches /dev/video*")
      return
    }
    var failed = false
    for path in paths {
      do {
        print(Self.render(try CaptureDevice.describe(path: path)))
      } catch {
        FileHandle.standardError.write(Data("relay-client devices: \(error)\n".utf8))
        failed = true
      }
    }
    if failed { throw ExitCode.failure }
  }

  static func videoDevices() -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []
    return names.filter { $0.hasPrefix("video") }.sorted().map { "/dev/" + $0 }
  }

  static func render(_ device: CaptureDevice) -> String {
    var lines = ["\(device.path): \(device.card) (driver \(device.driver))"]
    for format in device.formats {
      lines.append("  \(format.fourcc) \(format.description)")
      for size in format.sizes {
        let rates = size.frameRates.map { $0 == $0.rounded() ? String(Int($0)) : String(format: "%.2f", $0) }
        lines.append("    \(size.width)x\(size.height)" + (rates.isEmpty ? "" : " @ " + rates.joined(separator: ", ") + " fps"))
      }
    }
    return lines.joined(separator: "\n")
  }
}
