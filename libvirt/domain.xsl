<?xml version="1.0"?>
<!-- Applied by the libvirt provider to each node's domain XML (components/libvirt_xml.py
     domain_xslt, which fills in the two variables below, XML-escaped).

     Disks: the provider names a volume by pool and volume (<disk type="volume">), and AppArmor's
     helper does not follow such a disk to its base image, so QEMU is refused it. The same file named
     by its path (<disk type="file">) is followed; the driver (qcow2), target and everything else stay,
     and the cloud-init ISO, already a file, is left alone.

     Console: the serial console keeps its pty (virsh console) and, given a path, is also logged to
     that file, which virtlogd appends to (append="on": "off" would make it replace the file with one
     of root's). type="pty" only says what libvirt assumes when the provider leaves the type out. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:variable name="pool-dir">__POOL_DIR__</xsl:variable>
  <xsl:variable name="console-log">__CONSOLE_LOG__</xsl:variable>
  <xsl:template match="node()|@*">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/devices/disk[@type='volume']">
    <xsl:copy>
      <xsl:attribute name="type">file</xsl:attribute>
      <xsl:apply-templates select="@*[name() != 'type']|node()"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/devices/disk[@type='volume']/source">
    <source file="{$pool-dir}/{@volume}">
      <xsl:apply-templates select="@*[not(name() = 'pool' or name() = 'volume' or name() = 'mode')]|node()"/>
    </source>
  </xsl:template>
  <xsl:template match="/domain/devices/console[target/@type='serial']">
    <xsl:copy>
      <xsl:if test="not(@type)">
        <xsl:attribute name="type">pty</xsl:attribute>
      </xsl:if>
      <xsl:apply-templates select="@*|node()[not(self::log)]"/>
      <xsl:if test="string($console-log)">
        <log file="{$console-log}" append="on"/>
      </xsl:if>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
