package dev.faultline.cli;

public final class Main {
    public static void main(String[] args) {
        System.out.println("faultline: CLI under construction");
    }
}
