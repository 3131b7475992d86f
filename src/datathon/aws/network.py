"""The network of the team machines: a VPC (the region's default one, or one datathon makes with a public subnet
per availability zone), the workspace security group (SSH only from `ssh_from`, nothing else inbound), the
database security group (5432 only from the workspace group) and the S3 gateway endpoint on the subnets' route
tables (free; S3 traffic stays inside AWS)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from datathon.aws import names
from datathon.aws.base import AwsPart
from datathon.aws.session import AwsSession
from datathon.core import faults
from datathon.core.aws import error_code
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus
from datathon.errors import ProvisionError


@dataclass(frozen=True)
class Rule:
    port: int
    source: str  # a CIDR or a security group id

    def as_permission(self) -> dict:
        base = {"IpProtocol": "tcp", "FromPort": self.port, "ToPort": self.port}
        if self.source.startswith("sg-"):
            return {**base, "UserIdGroupPairs": [{"GroupId": self.source}]}
        if ":" in self.source:
            return {**base, "Ipv6Ranges": [{"CidrIpv6": self.source}]}
        return {**base, "IpRanges": [{"CidrIp": self.source}]}


@dataclass
class Group:
    id: str
    name: str
    ours: bool
    rules: set[Rule] = field(default_factory=set)
    odd: list[dict] = field(default_factory=list)  # inbound permissions that are not tcp to one port


@dataclass
class NetworkFacts:
    vpc_id: str | None = None
    vpc_made: bool = False  # datathon made it (vpc: create)
    vpc_cidr: str | None = None
    subnets: dict[str, str] = field(default_factory=dict)  # availability zone -> subnet id
    zones: list[str] = field(default_factory=list)  # the region's zones (for vpc: create)
    gateway_id: str | None = None
    route_table_id: str | None = None  # datathon's (vpc: create): 0.0.0.0/0 -> the gateway
    route_ok: bool = False
    associated: set[str] = field(default_factory=set)  # subnets on datathon's route table
    route_tables: list[str] = field(default_factory=list)  # the subnets' route tables (for the endpoint)
    groups: dict[str, Group] = field(default_factory=dict)  # name -> group
    endpoint: tuple[str, set[str]] | None = None  # (id, route tables)
    problem: str = ""  # the VPC cannot be used, and why


def permissions_to_rules(perms: list[dict]) -> tuple[set[Rule], list[dict]]:
    rules, odd = set(), []
    for p in perms:
        if p.get("IpProtocol") != "tcp" or p.get("FromPort") != p.get("ToPort"):
            odd.append(p)
            continue
        port = p["FromPort"]
        rules |= {Rule(port, r["CidrIp"]) for r in p.get("IpRanges", [])}
        rules |= {Rule(port, r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])}
        rules |= {Rule(port, g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
    return rules, odd


def subnet_cidrs(vpc_cidr: str, zones: list[str]) -> dict[str, str]:
    """One subnet per zone, 16 times smaller than the VPC (a /20 of a /16), in zone order."""
    net = ipaddress.IPv4Network(vpc_cidr)
    subnets = list(net.subnets(new_prefix=min(net.prefixlen + 4, 28)))
    return {z: str(subnets[i]) for i, z in enumerate(sorted(zones)[: len(subnets)])}


class NetworkPart(AwsPart):
    name = "aws network"
    after = ("aws account",)

    def __init__(self, session: AwsSession, event: str, *, vpc: str, vpc_cidr: str, ssh_from: list[str]) -> None:
        super().__init__(session, event)
        self.vpc_mode = vpc
        self.vpc_cidr = vpc_cidr
        self.ssh_from = ssh_from
        self._ids: dict[str, str] = {}  # what this run made: later changes of the same run use it

    # -- observe ------------------------------------------------------------------------------------------
    def observe(self, purpose: Purpose = "plan") -> NetworkFacts:
        f = NetworkFacts()
        ec2 = self.ec2
        made = self.call("finding the event's VPC", lambda: ec2.describe_vpcs(
            Filters=self.event_filter(**{names.KIND_TAG: "vpc"}))["Vpcs"])
        if made:
            f.vpc_id, f.vpc_made, f.vpc_cidr = made[0]["VpcId"], True, made[0]["CidrBlock"]
        elif self.vpc_mode == "default" or purpose == "teardown":
            default = self.call("finding the default VPC", lambda: ec2.describe_vpcs(
                Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"])
            if default:
                f.vpc_id, f.vpc_cidr = default[0]["VpcId"], default[0]["CidrBlock"]
            elif self.vpc_mode == "default":
                f.problem = ("the region has no default VPC: set aws.vpc: create (datathon makes one) or make a "
                             "default VPC (aws ec2 create-default-vpc)")
        if self.vpc_mode == "create" and purpose == "plan":
            f.zones = sorted(z["ZoneName"] for z in self.call("listing availability zones", lambda: ec2
                             .describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
                             ["AvailabilityZones"]) if z.get("ZoneType", "availability-zone") == "availability-zone")
        if f.vpc_id:
            self._observe_vpc(f)
        return f

    def _observe_vpc(self, f: NetworkFacts) -> None:
        ec2, vpc = self.ec2, f.vpc_id
        subnets = self.call("listing subnets", lambda: ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])
        for s in sorted(subnets, key=lambda s: s["AvailabilityZone"]):
            tags = names.tag_dict(s.get("Tags"))
            if f.vpc_made and tags.get(names.EVENT_TAG) != self.event:
                continue
            if not f.vpc_made and not s.get("DefaultForAz", False):
                continue
            f.subnets.setdefault(s["AvailabilityZone"], s["SubnetId"])
        tables = self.call("listing route tables", lambda: ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"])
        wanted_subnets = set(f.subnets.values())
        explicit, main = {}, None
        for t in tables:
            for a in t.get("Associations", []):
                if a.get("Main"):
                    main = t["RouteTableId"]
                elif a.get("SubnetId"):
                    explicit[a["SubnetId"]] = t["RouteTableId"]
            if names.tag_dict(t.get("Tags")).get(names.EVENT_TAG) == self.event:
                f.route_table_id = t["RouteTableId"]
                f.associated = {a["SubnetId"] for a in t.get("Associations", []) if a.get("SubnetId")}
                f.route_ok = any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId", "").startswith(
                    "igw-") for r in t.get("Routes", []))
        rts = {explicit.get(s, main) for s in wanted_subnets}
        f.route_tables = sorted(r for r in rts if r)
        if f.vpc_made:
            gws = self.call("finding the internet gateway", lambda: ec2.describe_internet_gateways(
                Filters=self.event_filter())["InternetGateways"])
            attached = [g for g in gws if any(a.get("VpcId") == vpc for a in g.get("Attachments", []))]
            f.gateway_id = (attached or gws or [{}])[0].get("InternetGatewayId")
            if gws and not attached:
                f.gateway_id = None  # made but not attached: the next step attaches it
                self._ids["loose_gateway"] = gws[0]["InternetGatewayId"]
        groups = self.call("listing security groups", lambda: ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [
                names.workspace_sg(self.event), names.database_sg(self.event)]}])["SecurityGroups"])
        for g in groups:
            rules, odd = permissions_to_rules(g.get("IpPermissions", []))
            ours = names.tag_dict(g.get("Tags")).get(names.EVENT_TAG) == self.event
            f.groups[g["GroupName"]] = Group(g["GroupId"], g["GroupName"], ours, rules, odd)
        eps = self.call("finding the S3 endpoint", lambda: ec2.describe_vpc_endpoints(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, *self.event_filter()])["VpcEndpoints"])
        eps = [e for e in eps if e.get("State", "available").lower() not in ("deleted", "deleting")]
        if eps:
            f.endpoint = (eps[0]["VpcEndpointId"], set(eps[0].get("RouteTableIds", [])))

    # -- plan (pure) -----------------------------------------------------------------------------------------
    def plan(self, f: NetworkFacts) -> list[Change]:
        out: list[Change] = []
        if f.problem:
            return [Change(Component.NETWORK, "vpc", "blocked", f.problem)]
        if self.vpc_mode == "create":
            out.append(self._plan_vpc(f))
        else:
            out.append(Change(Component.NETWORK, f"vpc {f.vpc_id}", "keep",
                              f"the region's default VPC ({len(f.subnets)} subnets, one per zone)"))
        ws_name, db_name = names.workspace_sg(self.event), names.database_sg(self.event)
        ws_rules = {Rule(22, c) for c in self.ssh_from}
        out.append(self._plan_group(f, ws_name, ws_rules, "SSH only from ssh_from"
                                    + (f" ({', '.join(self.ssh_from)})" if self.ssh_from else
                                       " (none: SSM only)")))
        ws = f.groups.get(ws_name)
        db_rules = {Rule(5432, ws.id)} if ws else None  # the workspace group's id is known once it exists
        out.append(self._plan_group(f, db_name, db_rules, "PostgreSQL (5432) only from the workspace group"))
        out.append(self._plan_endpoint(f))
        return out

    def _plan_vpc(self, f: NetworkFacts) -> Change:
        want = subnet_cidrs(self.vpc_cidr, f.zones) if f.zones else {}
        if f.vpc_id is None:
            return Change(Component.NETWORK, f"vpc {names.prefix(self.event)}", "create",
                          f"{self.vpc_cidr} with a public subnet in each of {len(want)} zones, an internet gateway "
                          "and a route table", run=lambda: self._ensure_vpc(want))
        missing = []
        if f.zones and set(want) - set(f.subnets):
            missing.append(f"subnets in {', '.join(sorted(set(want) - set(f.subnets)))}")
        if not f.gateway_id:
            missing.append("the internet gateway")
        if not f.route_table_id or not f.route_ok:
            missing.append("the route to the internet")
        if set(f.subnets.values()) - f.associated:
            missing.append("route table associations")
        if missing:
            return Change(Component.NETWORK, f"vpc {f.vpc_id}", "update", f"finish it: {', '.join(missing)}",
                          run=lambda: self._ensure_vpc(want))
        return Change(Component.NETWORK, f"vpc {f.vpc_id}", "keep",
                      f"made by datathon, {len(f.subnets)} public subnets, routed to the internet")

    def _plan_group(self, f: NetworkFacts, name: str, rules: set[Rule] | None, why: str) -> Change:
        g = f.groups.get(name)
        if g is None:
            return Change(Component.SECURITY_GROUP, name, "create", why,
                          run=lambda: self._ensure_group(name, why, rules))
        if not g.ours:
            return Change(Component.SECURITY_GROUP, name, "blocked",
                          f"{g.id} has this name and is not tagged {names.EVENT_TAG}={self.event}: datathon does not "
                          "adopt it; delete or rename it")
        extra = sorted((g.rules - rules) if rules is not None else set(), key=str)
        missing = sorted((rules - g.rules) if rules is not None else set(), key=str)
        if extra or missing or g.odd:
            said = [f"allow {r.source} to {r.port}" for r in missing]
            said += [f"revoke {r.source} to {r.port}" for r in extra] + [f"revoke {len(g.odd)} other rule(s)"] * bool(
                g.odd)
            return Change(Component.SECURITY_GROUP, f"{name} {g.id}", "update", "; ".join(said),
                          run=lambda: self._ensure_group(name, why, rules))
        return Change(Component.SECURITY_GROUP, f"{name} {g.id}", "keep", why)

    def _plan_endpoint(self, f: NetworkFacts) -> Change:
        service = f"com.amazonaws.{self.session.region}.s3"
        if f.endpoint is None:
            return Change(Component.ENDPOINT, service, "create", "S3 gateway endpoint on the subnets' route tables "
                          "(free; the imaging data stays inside AWS)", run=self._ensure_endpoint)
        eid, tables = f.endpoint
        missing = sorted(set(f.route_tables) - tables)
        if missing:
            return Change(Component.ENDPOINT, eid, "update", f"add route table(s) {', '.join(missing)}",
                          run=self._ensure_endpoint)
        return Change(Component.ENDPOINT, eid, "keep", f"S3 gateway endpoint on {len(tables)} route table(s)")

    # -- apply (each step checks before acting; ids made here serve the later steps of the run) ----------------
    def _facts(self) -> NetworkFacts:
        return self.observe()

    def _ensure_vpc(self, want: dict[str, str]) -> None:
        ec2, ev = self.ec2, self.event
        f = self._facts()
        vpc = f.vpc_id
        if vpc is None:
            vpc = self.call("creating the VPC", lambda: ec2.create_vpc(
                CidrBlock=self.vpc_cidr, TagSpecifications=names.spec("vpc", ev, "vpc", Name=names.prefix(ev))))[
                "Vpc"]["VpcId"]
            self.call("turning on DNS names in the VPC", lambda: ec2.modify_vpc_attribute(
                VpcId=vpc, EnableDnsHostnames={"Value": True}))
            faults.point("aws.vpc_made")
            f = self._facts()
        gw = f.gateway_id
        if gw is None:
            gw = self._ids.pop("loose_gateway", None) or self.call("creating the internet gateway", lambda: ec2
                .create_internet_gateway(TagSpecifications=names.spec("internet-gateway", ev, "gateway")))[
                    "InternetGateway"]["InternetGatewayId"]
            self.call("attaching the internet gateway", lambda: ec2.attach_internet_gateway(
                InternetGatewayId=gw, VpcId=vpc))
        rt = f.route_table_id or self.call("creating the route table", lambda: ec2.create_route_table(
            VpcId=vpc, TagSpecifications=names.spec("route-table", ev, "route-table")))["RouteTable"]["RouteTableId"]
        if not f.route_ok:
            self.call("routing the VPC to the internet", lambda: ec2.create_route(
                RouteTableId=rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=gw))
        subnets = dict(f.subnets)
        for zone, cidr in want.items():
            if zone not in subnets:
                subnets[zone] = self.call(f"creating the subnet in {zone}", lambda z=zone, c=cidr: ec2.create_subnet(
                    VpcId=vpc, CidrBlock=c, AvailabilityZone=z,
                    TagSpecifications=names.spec("subnet", ev, "subnet", Name=f"{names.prefix(ev)}-{z}")))[
                    "Subnet"]["SubnetId"]
                self.call(f"public addresses in {zone}", lambda s=subnets[zone]: ec2.modify_subnet_attribute(
                    SubnetId=s, MapPublicIpOnLaunch={"Value": True}))
        for sid in sorted(set(subnets.values()) - f.associated):
            self.call(f"routing subnet {sid}", lambda s=sid: ec2.associate_route_table(RouteTableId=rt, SubnetId=s))

    def _ensure_group(self, name: str, why: str, rules: set[Rule] | None) -> None:
        ec2 = self.ec2
        f = self._facts()
        g = f.groups.get(name)
        if g is None:
            gid = self.call(f"creating security group {name}", lambda: ec2.create_security_group(
                GroupName=name, Description=f"datathon {self.event}: {why}"[:255], VpcId=f.vpc_id,
                TagSpecifications=names.spec("security-group", self.event, name.rsplit("-", 1)[-1], Name=name)))[
                "GroupId"]
            g = Group(gid, name, True)
        if rules is None:  # the database group: its source is the workspace group, made just before
            ws = self._facts().groups[names.workspace_sg(self.event)]
            rules = {Rule(5432, ws.id)}
        extra, missing = g.rules - rules, rules - g.rules
        if g.odd:
            self.call(f"revoking other rules of {name}", lambda: ec2.revoke_security_group_ingress(
                GroupId=g.id, IpPermissions=g.odd))
        if extra:
            self.call(f"revoking rules of {name}", lambda: ec2.revoke_security_group_ingress(
                GroupId=g.id, IpPermissions=[r.as_permission() for r in sorted(extra, key=str)]))
        if missing:
            self.call(f"allowing rules of {name}", lambda: ec2.authorize_security_group_ingress(
                GroupId=g.id, IpPermissions=[r.as_permission() for r in sorted(missing, key=str)]))

    def _ensure_endpoint(self) -> None:
        ec2 = self.ec2
        f = self._facts()
        if f.endpoint is None:
            self.call("creating the S3 gateway endpoint", lambda: ec2.create_vpc_endpoint(
                VpcId=f.vpc_id, ServiceName=f"com.amazonaws.{self.session.region}.s3", VpcEndpointType="Gateway",
                RouteTableIds=f.route_tables, TagSpecifications=names.spec("vpc-endpoint", self.event, "endpoint")))
            return
        eid, tables = f.endpoint
        missing = sorted(set(f.route_tables) - tables)
        if missing:
            self.call("adding route tables to the S3 endpoint", lambda: ec2.modify_vpc_endpoint(
                VpcEndpointId=eid, AddRouteTableIds=missing))

    # -- status, teardown ------------------------------------------------------------------------------------
    def status(self, f: NetworkFacts) -> PartStatus:
        rows = [ComponentStatus("network", f.vpc_id or "vpc", "ok" if f.vpc_id and not f.problem else "missing",
                                f.problem or ("made by datathon" if f.vpc_made else "default VPC"),
                                healthy=bool(f.vpc_id) and not f.problem)]
        for name in (names.workspace_sg(self.event), names.database_sg(self.event)):
            g = f.groups.get(name)
            rows.append(ComponentStatus("security group", name, "ok" if g else "missing",
                                        ", ".join(f"{r.port} from {r.source}" for r in sorted(g.rules, key=str))
                                        if g else "", healthy=g is not None))
        rows.append(ComponentStatus("endpoint", "S3 gateway", "ok" if f.endpoint else "missing",
                                    f.endpoint[0] if f.endpoint else "", healthy=f.endpoint is not None))
        return PartStatus(rows)

    def teardown(self, f: NetworkFacts) -> list[Change]:
        """The endpoint, the database group (it names the workspace group), the workspace group, then the VPC
        datathon made (subnets, route table, gateway). The machines are gone by now (they come later in `up`)."""
        ec2, out = self.ec2, []
        if f.endpoint:
            eid = f.endpoint[0]
            out.append(Change(Component.ENDPOINT, eid, "drop", "the event ends", destructive=True,
                              run=lambda: self.call("deleting the S3 endpoint", lambda: ec2.delete_vpc_endpoints(
                                  VpcEndpointIds=[eid]))))
        for name in (names.database_sg(self.event), names.workspace_sg(self.event)):
            g = f.groups.get(name)
            if g and g.ours:
                out.append(Change(Component.SECURITY_GROUP, f"{name} {g.id}", "drop", "the event ends",
                                  destructive=True, run=lambda gid=g.id, n=name: self._delete_group(gid, n)))
        if f.vpc_made:
            out.append(Change(Component.NETWORK, f"vpc {f.vpc_id}", "drop", "made by datathon for the event",
                              destructive=True, run=lambda: self._delete_vpc(f.vpc_id)))
        return out

    def _delete_group(self, gid: str, name: str, *, bound: float = 180) -> None:
        """A group still held by a just-terminated machine's network interface (EC2 releases it a little after
        the machine reads `terminated`) answers DependencyViolation: that one answer is waited out, within a
        bound; any other error is reported at once."""
        deadline = time.monotonic() + bound
        while True:
            try:
                self.call(f"deleting security group {name}", lambda: self.ec2.delete_security_group(GroupId=gid))
                return
            except ProvisionError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, ClientError) and error_code(cause) == "DependencyViolation"
                        and time.monotonic() < deadline):
                    raise
                time.sleep(5)

    def _delete_vpc(self, vpc: str) -> None:
        ec2 = self.ec2
        tables = self.call("listing route tables", lambda: ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"])
        for t in tables:
            for a in t.get("Associations", []):
                if not a.get("Main") and a.get("RouteTableAssociationId"):
                    self.call("unrouting a subnet", lambda a=a: ec2.disassociate_route_table(
                        AssociationId=a["RouteTableAssociationId"]))
        for s in self.call("listing subnets", lambda: ec2.describe_subnets(
                Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]):
            self.call(f"deleting subnet {s['SubnetId']}", lambda s=s: ec2.delete_subnet(SubnetId=s["SubnetId"]))
        for t in tables:
            if not any(a.get("Main") for a in t.get("Associations", [])):
                self.call("deleting the route table",
                          lambda t=t: ec2.delete_route_table(RouteTableId=t["RouteTableId"]))
        for g in self.call("finding the internet gateway", lambda: ec2.describe_internet_gateways(
                Filters=self.event_filter())["InternetGateways"]):
            gid = g["InternetGatewayId"]
            for a in g.get("Attachments", []):
                self.call("detaching the internet gateway", lambda gid=gid, a=a: ec2.detach_internet_gateway(
                    InternetGatewayId=gid, VpcId=a["VpcId"]))
            self.call("deleting the internet gateway",
                      lambda gid=gid: ec2.delete_internet_gateway(InternetGatewayId=gid))
        self.call("deleting the VPC", lambda: ec2.delete_vpc(VpcId=vpc))

    def leftovers(self) -> list[str]:
        return []  # the account part lists everything still tagged with the event, once every part is done

    def security_group_id(self) -> str | None:
        return self._facts().groups.get(names.workspace_sg(self.event), Group("", "", False)).id or None
