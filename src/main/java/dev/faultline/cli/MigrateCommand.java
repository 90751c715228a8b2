package dev.faultline.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** `faultline migrate listen|send`: live migration of a guest between two faultline processes. */
@Command(name = "migrate", header = "Live migration between two faultline processes over TCP (listen, send).",
        mixinStandardHelpOptions = true,
        description = {"Live migration between two faultline processes over TCP (docs/migration.md):",
                "start 'migrate listen' on the destination, then 'migrate send --to HOST:PORT' on the source."},
        subcommands = {MigrateListenCommand.class, MigrateSendCommand.class})
final class MigrateCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
