# Checking stubs of the Vivado Tcl commands bamboo.tcl uses (see boards/tclcheck.py).
# Every stub validates its arguments against the tables dry_run_db.tcl sets and records
# the block design; bamboo_stub_finish checks the end state. Errors name the command.

set ::ip_tables [dict create]
set ::modules [dict create]
set ::cells [dict create]
set ::sources [list]
set ::driven [dict create]
set ::connected [dict create]
set ::intf_peer [dict create]
set ::addr [dict create]
set ::ranges [dict create]
set ::excluded [dict create]
set ::nets [list]
set ::intf_nets [list]
set ::runs [dict create]
set ::copied [list]
set ::generated [list]
set ::written [dict create]
set ::project ""
set ::bd ""
set ::validated 0

proc fail {msg} { error "$msg" }

proc opt {argsVar name {default ""}} {
    upvar $argsVar a
    set i [lsearch -exact $a $name]
    if {$i < 0} { return $default }
    set v [lindex $a [expr {$i + 1}]]
    set a [lreplace $a $i [expr {$i + 1}]]
    return $v
}
proc flag {argsVar name} {
    upvar $argsVar a
    set i [lsearch -exact $a $name]
    if {$i < 0} { return 0 }
    set a [lreplace $a $i $i]
    return 1
}

# --- project ------------------------------------------------------------------------
proc create_project {args} {
    flag args -force
    set part [opt args -part]
    if {$part ne $::expect_part} { fail "create_project: part $part, expected $::expect_part" }
    if {[llength $args] != 2} { fail "create_project: expected a name and a folder, got $args" }
    set ::project [lindex $args 0]
}
# Board files "installed" for the dry run: {board_part part ...} (dry_run_db.tcl may set it).
set ::installed_board_parts [dict create]
set ::board_part ""
proc get_board_parts {args} {
    flag args -quiet
    flag args -latest_file_version
    set pattern [lindex $args 0]
    set out {}
    foreach bp [dict keys $::installed_board_parts] {
        if {[string match -nocase $pattern $bp]} { lappend out $bp }
    }
    return $out
}
proc current_project {} { return $::project }
proc current_fileset {} { return sources_1 }
proc update_compile_order {args} {}
proc add_files {args} {
    flag args -norecurse
    set fileset [opt args -fileset sources_1]
    foreach f $args {
        if {[string match *.v $f] && ![_file exists $f] && $f ni $::generated} {
            fail "add_files: $f does not exist"
        }
        lappend ::sources $f
    }
}
proc get_files {name} { return $name }
proc version {args} { return 2022.1 }

# --- block design ---------------------------------------------------------------------
proc create_bd_design {name} { set ::bd $name }
proc create_bd_cell {args} {
    set type [opt args -type]
    set vlnv [opt args -vlnv]
    set ref [opt args -reference]
    set name [lindex $args 0]
    if {[dict exists $::cells $name]} { fail "create_bd_cell: cell $name exists already" }
    if {$type eq "ip"} {
        set base [join [lrange [split $vlnv :] 0 2] :]
        if {![dict exists $::ip_tables $base]} { fail "create_bd_cell: unknown IP $vlnv" }
        set t [dict get $::ip_tables $base]
        dict set ::cells $name [dict create kind ip vlnv $base pins [dict get $t pins] \
            props [dict get $t defaults] keys [dict get $t keys]]
    } elseif {$type eq "module"} {
        if {![dict exists $::modules $ref]} { fail "create_bd_cell: no module $ref in the sources" }
        set m [dict get $::modules $ref]
        set found 0
        foreach f $::sources { if {[_file tail $f] eq [dict get $m file]} { set found 1 } }
        if {!$found} { fail "create_bd_cell: [dict get $m file] (module $ref) was not added" }
        dict set ::cells $name [dict create kind module vlnv $ref pins [dict get $m pins] \
            props {} keys {}]
    } else {
        fail "create_bd_cell: -type $type"
    }
    return $name
}
proc apply_bd_automation {args} {
    set rule [opt args -rule]
    set config [opt args -config]
    set cell [lindex $args 0]
    set vlnv [dict get $::cells $cell vlnv]
    if {[string map {bd_rule ip} $rule] ne $vlnv} { fail "apply_bd_automation: rule $rule on $vlnv" }
    set ext [dict get $::ip_tables $vlnv external]
    foreach e $ext { dict set ::connected $cell/$e external }
}
proc set_property {args} {
    set d [opt args -dict]
    if {[lindex $args 0] eq "board_part"} {
        if {![dict exists $::installed_board_parts [lindex $args 1]]} { fail "set_property: no board part [lindex $args 1]" }
        set ::board_part [lindex $args 1]
        return
    }
    if {$d eq ""} { return }
    set cell [lindex $args 0]
    if {![dict exists $::cells $cell]} { fail "set_property: no cell $cell" }
    foreach {k v} $d {
        if {![string match CONFIG.* $k]} { fail "set_property: $k is not a CONFIG property" }
        set key [string range $k 7 end]
        if {[lsearch -exact [dict get $::cells $cell keys] $key] < 0} {
            fail "set_property: $cell ([dict get $::cells $cell vlnv]) has no CONFIG.$key"
        }
        dict set ::cells $cell props $key $v
    }
}
proc get_property {name obj} {
    switch -- $name {
        PROGRESS { return 100% }
        STATUS { return "Complete" }
        PERIOD { return [expr {1000.0 / $::expect_mhz}] }
        SLACK { return untimed }
        PART_NAME { return [dict get $::installed_board_parts $obj] }
    }
    fail "get_property: $name not stubbed"
}

proc pin_enabled {cell pin} {
    set needs [lindex $pin 3]
    if {$needs eq ""} { return 1 }
    lassign $needs key want
    set have [expr {[dict exists $::cells $cell props $key] ? [dict get $::cells $cell props $key] : 0}]
    if {[string index $want 0] eq ">"} { return [expr {$have > [string range $want 1 end]}] }
    return [expr {$have eq $want}]
}
proc lookup {cmd path kind} {
    set parts [split $path /]
    if {[llength $parts] != 2} { fail "$cmd: $path is not cell/pin" }
    lassign $parts cell name
    if {![dict exists $::cells $cell]} { fail "$cmd: no cell $cell (for $path)" }
    foreach pin [dict get $::cells $cell pins] {
        if {[lindex $pin 0] eq $name} {
            if {[lindex $pin 1] ne $kind} { fail "$cmd: $path is a [lindex $pin 1], not a $kind" }
            if {![pin_enabled $cell $pin]} {
                fail "$cmd: $path exists only with CONFIG.[join [lindex $pin 3] { = }]"
            }
            return $pin
        }
    }
    fail "$cmd: [dict get $::cells $cell vlnv] cell $cell has no $kind $name"
}
proc get_bd_pins {path} { lookup get_bd_pins $path pin; return $path }
proc get_bd_intf_pins {path} { lookup get_bd_intf_pins $path intf; return $path }
proc get_bd_cells {name} {
    if {![dict exists $::cells $name]} { fail "get_bd_cells: no cell $name" }
    return $name
}
proc connect_bd_net {args} {
    if {[llength $args] < 2} { fail "connect_bd_net: needs two pins or more" }
    set drivers {}
    foreach p $args {
        set pin [lookup connect_bd_net $p pin]
        if {[dict exists $::connected $p]} { fail "connect_bd_net: $p is connected already" }
        if {[lindex $pin 2] eq "O"} { lappend drivers $p }
    }
    if {[llength $drivers] != 1} { fail "connect_bd_net: [llength $drivers] drivers ($drivers) on $args" }
    foreach p $args { dict set ::connected $p [lindex $drivers 0] }
    lappend ::nets [concat [list [lindex $drivers 0]] $args]
}
proc connect_bd_intf_net {a b} {
    set pa [lookup connect_bd_intf_net $a intf]
    set pb [lookup connect_bd_intf_net $b intf]
    if {[lindex $pa 5] ne [lindex $pb 5]} { fail "connect_bd_intf_net: $a is [lindex $pa 5], $b is [lindex $pb 5]" }
    if {[lsort [list [lindex $pa 2] [lindex $pb 2]]] ne {master slave}} {
        fail "connect_bd_intf_net: $a ([lindex $pa 2]) to $b ([lindex $pb 2])"
    }
    foreach p [list $a $b] { if {[dict exists $::connected $p]} { fail "connect_bd_intf_net: $p is connected already" } }
    dict set ::connected $a $b
    dict set ::connected $b $a
    lappend ::intf_nets [list $a $b]
}
proc get_bd_addr_spaces {path} {
    lassign [split $path /] cell space
    if {![dict exists $::cells $cell]} { fail "get_bd_addr_spaces: no cell $cell" }
    set c [dict get $::cells $cell]
    if {[dict get $c kind] eq "module"} {
        set pin [lookup get_bd_addr_spaces $path intf]
        if {[lindex $pin 2] ne "master"} { fail "get_bd_addr_spaces: $path is not a master" }
    } elseif {$space ne "Data"} { fail "get_bd_addr_spaces: $cell has no address space $space" }
    return $path
}
proc get_bd_addr_segs {args} {
    set of [opt args -of_objects]
    if {$of ne ""} {
        set pin [lookup get_bd_addr_segs $of intf]
        if {[lindex $pin 2] ne "slave"} { fail "get_bd_addr_segs: $of is not a slave" }
        return $of/reg0
    }
    set path [lindex $args 0]
    set cell [lindex [split $path /] 0]
    set seg [join [lrange [split $path /] 1 end] /]
    set segments [dict get $::ip_tables [dict get $::cells $cell vlnv] segments]
    dict for {intf names} $segments {
        if {[lsearch -exact $names $seg] >= 0} {
            lookup get_bd_addr_segs $cell/$intf intf
            return $path
        }
    }
    fail "get_bd_addr_segs: no segment $seg on $cell"
}
proc assign_bd_address {args} {
    flag args -force
    set offset [opt args -offset]
    set range [opt args -range]
    set space [opt args -target_address_space]
    if {$space eq ""} { fail "assign_bd_address: give -target_address_space" }
    if {$range ne "" && ($range & ($range - 1))} { fail "assign_bd_address: range $range" }
    if {$offset ne "" && $range ne "" && ($offset % $range)} { fail "assign_bd_address: $offset not aligned to $range" }
    foreach seg [lindex $args 0] {
        dict set ::addr $space $seg $offset
        dict set ::ranges $space $seg $range
    }
}
proc exclude_bd_addr_seg {args} {
    set space [opt args -target_address_space]
    if {$space eq ""} { fail "exclude_bd_addr_seg: give -target_address_space" }
    foreach seg [lindex $args 0] { dict set ::excluded $space $seg 1 }
}
# Every segment a master reaches through a slave interface must be assigned or excluded,
# else Vivado's address validation warns of unmapped segments (PYNQ's base designs map
# or exclude all of them).
proc check_segments {} {
    dict for {space segs} $::addr {
        foreach seg [dict keys $segs] {
            set cell [lindex [split $seg /] 0]
            set vlnv [dict get $::cells $cell vlnv]
            if {[dict get $::cells $cell kind] ne "ip"} { continue }
            set name [join [lrange [split $seg /] 1 end] /]
            dict for {intf names} [dict get $::ip_tables $vlnv segments] {
                if {[lsearch -exact $names $name] < 0} { continue }
                foreach other $names {
                    if {![dict exists $::addr $space $cell/$other] && ![dict exists $::excluded $space $cell/$other]} {
                        fail "finish: $space reaches $cell/$intf but $cell/$other is neither assigned nor excluded"
                    }
                }
            }
        }
    }
}
proc validate_bd_design {} {
    dict for {cell c} $::cells {
        foreach pin [dict get $c pins] {
            lassign $pin name kind dir needs clock
            if {![pin_enabled $cell $pin]} { continue }
            set used [dict exists $::connected $cell/$name]
            set vlnv [dict get $c vlnv]
            if {[dict get $c kind] eq "module"} {
                set required [expr {$kind eq "intf" || $dir eq "I"}]
            } else {
                set t [dict get $::ip_tables $vlnv]
                set required [expr {[lsearch -exact [dict get $t required] $name] >= 0
                    || [lsearch -exact [dict get $t external] $name] >= 0
                    || ($kind eq "intf" && [string match {[SM][0-9][0-9]_AXI} $name])}]
            }
            if {$required && !$used} { fail "validate_bd_design: $cell/$name is not connected" }
            # An enabled AXI port needs its clock even when nothing uses it.
            if {$kind eq "intf" && $clock ne ""} {
                if {![dict exists $::connected $cell/$clock]} {
                    fail "validate_bd_design: $cell/$name is enabled but its clock $cell/$clock is not connected"
                }
            }
        }
    }
    dict for {name m} $::modules {
        foreach b [dict get $m associated] {
            if {[lsearch -exact [dict get $m busif] $b] < 0} { fail "validate_bd_design: clk ASSOCIATED_BUSIF $b is no interface of $name" }
        }
    }
    set ::validated 1
}
proc dict_get_or {d args} { if {[dict exists $d {*}$args]} { return [dict get $d {*}$args] }; return "" }
proc save_bd_design {args} {}
proc make_wrapper {args} {
    if {!$::validated} { fail "make_wrapper before validate_bd_design" }
    if {![flag args -top]} { fail "make_wrapper: -top" }
    set f $::bd/hdl/${::bd}_wrapper.v
    lappend ::generated $f
    return $f
}

# --- runs -----------------------------------------------------------------------------
proc launch_runs {run args} {
    if {$run ni {synth_1 impl_1}} { fail "launch_runs: unknown run $run" }
    if {$run eq "impl_1" && ![dict exists $::runs synth_1]} { fail "launch_runs: impl_1 before synth_1" }
    set to [opt args -to_step]
    dict set ::runs $run [expr {$to eq "" ? "done" : $to}]
}
proc wait_on_run {run} { if {![dict exists $::runs $run]} { fail "wait_on_run: $run was not launched" } }
proc get_runs {run} { return $run }
proc open_run {run} { if {![dict exists $::runs $run]} { fail "open_run: $run was not run" } }
proc close_design {} {}
proc get_pins {args} { return pin }
proc get_clocks {args} {
    flag args -quiet
    set name [lindex $args end]
    if {$name ne $::expect_clock_name} { fail "get_clocks: the PS IP names its clock $::expect_clock_name, not $name" }
    return $name
}
proc get_timing_paths {args} { return path }
proc report_utilization {args} { dict set ::written [opt args -file] 1 }
proc report_timing_summary {args} { dict set ::written [opt args -file] 1 }
proc write_hw_platform {args} {
    foreach f {-fixed -include_bit} { if {![flag args $f]} { fail "write_hw_platform: needs $f" } }
    if {[dict_get_or $::runs impl_1] ne "write_bitstream"} { fail "write_hw_platform before the bitstream" }
    dict set ::written [opt args -file] 1
}

# File operations on outputs Vivado would have made are recorded, not done.
rename file _file
proc file {sub args} {
    if {$sub eq "copy"} { lappend ::copied [lindex $args end]; return }
    return [_file $sub {*}$args]
}
rename glob _glob
proc glob {args} { return $args }
rename exit _exit
proc exit {{code 0}} { if {$code} { fail "the script exits with $code" } }

# Every line the script prints says that this is a dry run (nothing built or timed).
rename puts _puts
proc puts {args} {
    if {[llength $args] == 1} {
        _puts "DRY RUN, nothing built or timed: [lindex $args 0]"
    } else {
        _puts {*}$args
    }
}

# The recorded block design, for boards/hwh.py (the hardware handoff PYNQ reads).
proc write_design {path} {
    set f [open $path w]
    dict for {cell c} $::cells {
        _puts $f [list cell $cell [dict get $c kind] [dict get $c vlnv]]
        dict for {k v} [dict get $c props] { _puts $f [list prop $cell $k $v] }
    }
    foreach n $::nets { _puts $f [concat net $n] }
    foreach n $::intf_nets { _puts $f [concat intf $n] }
    dict for {space segs} $::addr {
        dict for {seg offset} $segs {
            _puts $f [list addr $space $seg $offset [dict get $::ranges $space $seg]]
        }
    }
    dict for {space segs} $::excluded {
        foreach seg [dict keys $segs] { _puts $f [list exclude $space $seg] }
    }
    close $f
}

proc bamboo_stub_finish {} {
    set out [_file dirname [_file normalize [info script]]]
    foreach f {bamboo.bit bamboo.hwh} {
        if {[lsearch -glob $::copied */$f] < 0} { fail "finish: $f is never copied out" }
    }
    foreach f {bamboo.xsa utilization.rpt timing.rpt} {
        if {[llength [lsearch -glob -inline [dict keys $::written] */$f]] == 0} { fail "finish: $f is never written" }
    }
    set ps_found 0
    dict for {cell c} $::cells { if {[dict get $c vlnv] eq $::expect_ps} { set ps_found $cell } }
    if {$ps_found eq 0} { fail "finish: no $::expect_ps cell" }
    lassign [dict get $::ip_tables $::expect_ps clock] clkpin key
    set mhz [dict_get_or $::cells $ps_found props $key]
    if {$mhz eq "" || abs($mhz - $::expect_mhz) > 0.01} { fail "finish: PS clock $key = '$mhz', expected $::expect_mhz" }
    set regs [dict_get_or $::addr ps/Data $::expect_cell/s_axi/reg0]
    if {$regs eq "" || $regs != $::expect_reg_base} {
        fail "finish: $::expect_cell registers at '$regs', expected $::expect_reg_base"
    }
    if {![dict exists $::cells $::expect_cell] || [dict get $::cells $::expect_cell kind] ne "module"} {
        fail "finish: no module cell $::expect_cell (the runtime looks the accelerator up by it)"
    }
    check_segments
    write_design [_file join $out dry_run_design.txt]
    _puts "dry run: OK ([dict size $::cells] cells, [dict size $::connected] connected pins); nothing was built or timed"
}
