package dev.faultline.cli;

import picocli.CommandLine.Option;

/** The CPU-priority switch of the commands that migrate (both ends and the demo). */
final class PriorityOptions {
    @Option(names = "--no-priorities",
            description = "Leave every thread at the default CPU priority. Without it, threads a faulting vCPU waits for run SCHED_FIFO "
                    + "(else nice -15) and the threads that move pushed pages run at nice -10, so that two busy vCPUs on a small host "
                    + "do not starve the migration (needs root or CAP_SYS_NICE; what each thread got is reported).")
    boolean noPriorities;

    /** Whether to raise priorities (the default). */
    boolean raise() { return !noPriorities; }
}
