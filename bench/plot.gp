# SPDX-License-Identifier: MIT
# bench/plot.gp - pages/s against vCPU threads, one line per front-end, from the table that
# bench/run.sh writes (columns: vcpus, then one per front-end and setting: floor, bare loops,
# self, handler, with fault-around, handler with a reader / a userfaultfd per vCPU).
# Usage: gnuplot -e "data='plot.dat'; outfile='bench.png'" bench/plot.gp
set terminal pngcairo size 1000,640 noenhanced
set output outfile
set title "pagein bench: first touch of 4 KiB pages, one page per fault unless 'around auto'"
set xlabel "vCPU threads"
set ylabel "pages/s (all vCPUs)"
set logscale x 2
# log y: the fault-around lines are several times the one-page-per-fault ones
set logscale y 10
set ytics (10000, 20000, 50000, 100000, 200000, 500000, 1000000, 2000000)
# one colour each (the default cycle repeats after eight)
set linetype 1 lc rgb "black" lw 3 pt 1
set linetype 2 lc rgb "#1b9e77" lw 2 pt 2 dt 2
set linetype 3 lc rgb "#d95f02" lw 2 pt 3 dt 2
set linetype 4 lc rgb "#1b9e77" lw 2 pt 4
set linetype 5 lc rgb "#d95f02" lw 2 pt 5
set linetype 6 lc rgb "#7570b3" lw 2 pt 6
set linetype 7 lc rgb "#e7298a" lw 2 pt 7
set linetype 8 lc rgb "#66a61e" lw 2 pt 8
set linetype 9 lc rgb "#a6761d" lw 2 pt 9
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set format y "%.0s%c"
set key outside right
set grid
plot for [i=2:10] data using 1:i with linespoints lt (i-1) title columnheader(i)
