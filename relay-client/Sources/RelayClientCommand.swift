import ArgumentParser

@main
struct RelayClientCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-client",
    abstract: "Captures a camera (RTSP, V4L2, file, test pattern) and streams it to relay-server.",
    subcommands: [Publish.self, Simple.self, AVA.self, Devices.self],
    defaultSubcommand: Publish.self)
}
