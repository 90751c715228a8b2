package dev.faultline.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** `faultline bench ...`: benchmarks that print figures (and one JSON object with --json). */
@Command(name = "bench", header = "Benchmarks (paging, handler, interp), each with --json figures.",
        mixinStandardHelpOptions = true,
        description = "Benchmarks. Each prints its figures, or one JSON object with --json.",
        subcommands = {BenchInterpCommand.class, BenchPagingCommand.class, BenchHandlerCommand.class})
final class BenchCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
