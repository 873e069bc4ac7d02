//! template.yaml read as the local stack needs it: the HTTP routes, the SQS event sources (batch
//! size, concurrency, redrive), the schedules, the API's `CorsConfiguration` and each function's
//! timeout. The template is the one list; nothing here restates it.
//!
//! CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Split`, ...) arrive from YAML as tagged values;
//! they are rewritten to their long forms (`Ref`, `Fn::GetAtt`, ...) first, so each intrinsic has
//! one reader. Only what the local stack needs is evaluated: parameters (`Ref` to a parameter, with
//! its default or a given value), `Fn::Split`, `Fn::Join`, `Fn::GetAtt` of a resource, and `Fn::If`
//! over the template's conditions (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use crate::Result;

/// An HTTP API route: `METHOD /path/{param}` invoking `function` (its Cargo binary name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
}

impl Route {
    /// API Gateway's route key, as the event's `routeKey` carries it.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An SQS event source: the queue that feeds `function`, as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    pub function: String,
    /// The queue's logical id (`TranscriptionQueue`), used as its local name.
    pub queue: String,
    /// Environment variables that carry the queue's URL (`!Ref <queue>` anywhere in the template).
    pub url_variables: Vec<String>,
    pub batch_size: i32,
    /// `ScalingConfig.MaximumConcurrency`, if set.
    pub max_concurrency: Option<u32>,
    /// The redrive policy's `maxReceiveCount`.
    pub max_receive_count: u32,
}

/// An EventBridge schedule: `function` every `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub function: String,
    pub expression: String,
    pub every: Duration,
}

/// The HTTP API's `CorsConfiguration`, evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfiguration {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Option<u64>,
}

/// What the local stack takes from template.yaml.
#[derive(Debug, Clone)]
pub struct Template {
    pub routes: Vec<Route>,
    pub queues: Vec<QueueSource>,
    pub schedules: Vec<Schedule>,
    pub cors: Option<CorsConfiguration>,
    /// Each function's `Timeout` (its own, else the global one).
    pub timeouts: BTreeMap<String, Duration>,
    /// `ReservedConcurrentExecutions` of the functions that set one under these parameters.
    pub reserved_concurrency: BTreeMap<String, u32>,
}

impl Template {
    /// Reads `path`, with `parameters` overriding the template's parameter defaults.
    pub fn load(path: &Path, parameters: &BTreeMap<String, String>) -> Result<Template> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Template::parse(&text, parameters).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, parameters: &BTreeMap<String, String>) -> Result<Template> {
        let raw: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let doc = long_form(raw);
        let scope = Scope::new(&doc, parameters)?;
        let resources = doc["Resources"]
            .as_mapping()
            .ok_or("the template has no Resources")?;
        let global_timeout = doc["Globals"]["Function"]["Timeout"].as_u64().unwrap_or(3);

        let mut template = Template {
            routes: Vec::new(),
            queues: Vec::new(),
            schedules: Vec::new(),
            cors: None,
            timeouts: BTreeMap::new(),
            reserved_concurrency: BTreeMap::new(),
        };
        for (id, resource) in resources {
            let id = id.as_str().unwrap_or_default();
            match resource["Type"].as_str() {
                Some("AWS::Serverless::HttpApi") => {
                    let cors = scope
                        .choose(&resource["Properties"]["CorsConfiguration"])
                        .map_err(|e| format!("{id}.CorsConfiguration: {e}"))?;
                    if let Some(cors) = cors {
                        template.cors = Some(
                            scope
                                .cors(cors)
                                .map_err(|e| format!("{id}.CorsConfiguration: {e}"))?,
                        );
                    }
                }
                Some("AWS::Serverless::Function") => {
                    scope
                        .function(&mut template, resource, global_timeout)
                        .map_err(|e| format!("{id}: {e}"))?;
                }
                _ => {}
            }
        }
        template.routes.sort();
        Ok(template)
    }

    /// The function's timeout; the global default for a function the template does not name.
    pub fn timeout(&self, function: &str) -> Option<Duration> {
        self.timeouts.get(function).copied()
    }
}

/// Rewrites short-form intrinsics (`!Ref x`) to long form (`{Ref: x}`), recursively.
fn long_form(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = long_form(tagged.value);
            let (key, inner) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                // `!GetAtt A.B` is a string; the long form is the list [A, B].
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => Value::Sequence(vec![a.into(), b.into()]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), inner)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut map = Mapping::new();
            map.insert(Value::String(key), inner);
            Value::Mapping(map)
        }
        Value::Mapping(map) => {
            Value::Mapping(map.into_iter().map(|(k, v)| (k, long_form(v))).collect())
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(long_form).collect()),
        other => other,
    }
}

/// Parameter values and the resources' names, for evaluating intrinsics.
struct Scope<'a> {
    doc: &'a Value,
    parameters: BTreeMap<String, String>,
}

impl<'a> Scope<'a> {
    fn new(doc: &'a Value, given: &BTreeMap<String, String>) -> Result<Scope<'a>> {
        let mut parameters = BTreeMap::new();
        if let Some(declared) = doc["Parameters"].as_mapping() {
            for (name, declaration) in declared {
                let name = name.as_str().unwrap_or_default().to_owned();
                let default = match &declaration["Default"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                if let Some(value) = given.get(&name).cloned().or(default) {
                    parameters.insert(name, value);
                }
            }
        }
        if let Some(unknown) = given.keys().find(|k| !parameters.contains_key(*k)) {
            return Err(format!("no parameter {unknown} in the template"));
        }
        Ok(Scope { doc, parameters })
    }

    /// `value`, or the branch an `Fn::If` picks; `None` for a missing value or `AWS::NoValue`.
    fn choose<'v>(&self, value: &'v Value) -> Result<Option<&'v Value>> {
        let value = match value["Fn::If"].as_sequence() {
            Some(args) => {
                let [condition, then, otherwise] = args.as_slice() else {
                    return Err("Fn::If takes [condition, then, else]".to_owned());
                };
                let name = condition.as_str().ok_or("Fn::If names a condition")?;
                if self.condition(&self.doc["Conditions"][name])? {
                    then
                } else {
                    otherwise
                }
            }
            None => value,
        };
        Ok((!value.is_null() && value["Ref"].as_str() != Some("AWS::NoValue")).then_some(value))
    }

    /// A condition: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, or another `Condition`.
    fn condition(&self, value: &Value) -> Result<bool> {
        let map = value
            .as_mapping()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| format!("not a condition: {value:?}"))?;
        let (key, arg) = map.iter().next().expect("one entry");
        let list = || arg.as_sequence().ok_or(format!("{key:?} takes a list"));
        match key.as_str() {
            Some("Fn::Equals") => match list()?.as_slice() {
                [a, b] => Ok(self.string(a)? == self.string(b)?),
                _ => Err("Fn::Equals takes two values".to_owned()),
            },
            Some("Fn::Not") => match list()?.as_slice() {
                [c] => Ok(!self.condition(c)?),
                _ => Err("Fn::Not takes one condition".to_owned()),
            },
            Some("Fn::And") => list()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.condition(c)?)),
            Some("Fn::Or") => list()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.condition(c)?)),
            Some("Condition") => {
                let name = arg.as_str().ok_or("Condition takes a name")?;
                self.condition(&self.doc["Conditions"][name])
            }
            _ => Err(format!("cannot evaluate {key:?} as a condition")),
        }
    }

    /// A scalar: a literal, or `Ref` to a parameter.
    fn string(&self, value: &Value) -> Result<String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Mapping(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                match key.as_str() {
                    Some("Ref") => {
                        let name = arg.as_str().ok_or("Ref takes a name")?;
                        self.parameters.get(name).cloned().ok_or_else(|| {
                            format!("Ref {name}: not a parameter with a value (pass it, or give it a Default)")
                        })
                    }
                    Some("Fn::Join") => {
                        let args = arg
                            .as_sequence()
                            .ok_or("Fn::Join takes [delimiter, list]")?;
                        let [delimiter, list] = args.as_slice() else {
                            return Err("Fn::Join takes [delimiter, list]".to_owned());
                        };
                        Ok(self.list(list)?.join(&self.string(delimiter)?))
                    }
                    Some("Fn::Select") => {
                        let args = arg.as_sequence().ok_or("Fn::Select takes [index, list]")?;
                        let [index, list] = args.as_slice() else {
                            return Err("Fn::Select takes [index, list]".to_owned());
                        };
                        let index = self.number(index)? as usize;
                        self.list(list)?
                            .get(index)
                            .cloned()
                            .ok_or_else(|| format!("Fn::Select: no element {index}"))
                    }
                    Some("Fn::FindInMap") => {
                        let args = arg
                            .as_sequence()
                            .ok_or("Fn::FindInMap takes [map, key, key]")?;
                        let [map, top, second] = args.as_slice() else {
                            return Err("Fn::FindInMap takes [map, key, key]".to_owned());
                        };
                        let value = &self.doc["Mappings"][self.string(map)?.as_str()]
                            [self.string(top)?.as_str()][self.string(second)?.as_str()];
                        self.string(value)
                    }
                    _ => Err(format!("cannot evaluate {key:?} here")),
                }
            }
            other => Err(format!("expected a string, found {other:?}")),
        }
    }

    /// A list: a literal sequence (of scalars), or `Fn::Split`.
    fn list(&self, value: &Value) -> Result<Vec<String>> {
        match value {
            Value::Sequence(items) => items.iter().map(|i| self.string(i)).collect(),
            Value::Mapping(map) if map.len() == 1 && map.contains_key("Fn::Split") => {
                let args = map["Fn::Split"]
                    .as_sequence()
                    .ok_or("Fn::Split takes [delimiter, string]")?;
                let [delimiter, source] = args.as_slice() else {
                    return Err("Fn::Split takes [delimiter, string]".to_owned());
                };
                let delimiter = self.string(delimiter)?;
                Ok(self
                    .string(source)?
                    .split(delimiter.as_str())
                    .map(str::to_owned)
                    .collect())
            }
            other => Err(format!("expected a list, found {other:?}")),
        }
    }

    fn number(&self, value: &Value) -> Result<u64> {
        let text = self.string(value)?;
        text.parse()
            .map_err(|_| format!("expected a number, found {text:?}"))
    }

    fn cors(&self, cors: &Value) -> Result<CorsConfiguration> {
        let list = |key: &str| match &cors[key] {
            Value::Null => Ok(Vec::new()),
            v => self.list(v).map_err(|e| format!("{key}: {e}")),
        };
        Ok(CorsConfiguration {
            allow_origins: list("AllowOrigins")?,
            allow_methods: list("AllowMethods")?,
            allow_headers: list("AllowHeaders")?,
            expose_headers: list("ExposeHeaders")?,
            allow_credentials: match &cors["AllowCredentials"] {
                Value::Null => false,
                v => self.string(v)? == "true",
            },
            max_age: match &cors["MaxAge"] {
                Value::Null => None,
                v => Some(self.number(v)?),
            },
        })
    }

    fn function(
        &self,
        template: &mut Template,
        resource: &Value,
        global_timeout: u64,
    ) -> Result<()> {
        let function = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .ok_or("no Metadata.BuildProperties.Binary")?
            .to_owned();
        let properties = &resource["Properties"];
        let timeout = match &properties["Timeout"] {
            Value::Null => global_timeout,
            v => self.number(v)?,
        };
        template
            .timeouts
            .insert(function.clone(), Duration::from_secs(timeout));
        if let Some(reserved) = self.choose(&properties["ReservedConcurrentExecutions"])? {
            let reserved = self
                .number(reserved)
                .map_err(|e| format!("ReservedConcurrentExecutions: {e}"))?;
            template
                .reserved_concurrency
                .insert(function.clone(), reserved as u32);
        }
        let Some(events) = properties["Events"].as_mapping() else {
            return Ok(());
        };
        for (name, event) in events {
            let name = name.as_str().unwrap_or_default();
            let p = &event["Properties"];
            match event["Type"].as_str() {
                Some("HttpApi") => template.routes.push(Route {
                    method: self.string(&p["Method"])?.to_ascii_uppercase(),
                    path: self.string(&p["Path"])?,
                    function: function.clone(),
                }),
                Some("SQS") => {
                    let queue = get_att_resource(&p["Queue"])
                        .ok_or_else(|| format!("{name}: Queue must be !GetAtt <queue>.Arn"))?;
                    template.queues.push(QueueSource {
                        function: function.clone(),
                        url_variables: self.variables_referencing(&queue),
                        max_receive_count: self.max_receive_count(&queue)?,
                        batch_size: match &p["BatchSize"] {
                            // SQS event sources batch 10 unless told otherwise.
                            Value::Null => 10,
                            v => self.number(v)? as i32,
                        },
                        max_concurrency: match &p["ScalingConfig"]["MaximumConcurrency"] {
                            Value::Null => None,
                            v => Some(self.number(v)? as u32),
                        },
                        queue,
                    });
                }
                Some("Schedule") => {
                    let expression = self.string(&p["Schedule"])?;
                    template.schedules.push(Schedule {
                        every: rate(&expression).ok_or_else(|| {
                            format!(
                                "{name}: only rate(...) schedules run locally, not {expression:?}"
                            )
                        })?,
                        expression,
                        function: function.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every `Environment.Variables` name whose value is `!Ref <queue>`.
    fn variables_referencing(&self, queue: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut collect = |variables: &Value| {
            for (name, value) in variables.as_mapping().into_iter().flatten() {
                if value["Ref"].as_str() == Some(queue)
                    && let Some(name) = name.as_str()
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
        };
        collect(&self.doc["Globals"]["Function"]["Environment"]["Variables"]);
        for (_, resource) in self.doc["Resources"].as_mapping().into_iter().flatten() {
            collect(&resource["Properties"]["Environment"]["Variables"]);
        }
        names.sort();
        names
    }

    fn max_receive_count(&self, queue: &str) -> Result<u32> {
        let redrive = &self.doc["Resources"][queue]["Properties"]["RedrivePolicy"];
        match &redrive["maxReceiveCount"] {
            Value::Null => Err(format!("{queue} has no RedrivePolicy.maxReceiveCount")),
            v => Ok(self.number(v)? as u32),
        }
    }
}

/// `{Fn::GetAtt: [Resource, Arn]}` → `Resource`.
fn get_att_resource(value: &Value) -> Option<String> {
    let args = value["Fn::GetAtt"].as_sequence()?;
    Some(args.first()?.as_str()?.to_owned())
}

/// `rate(5 minutes)` → 5 min. EventBridge's rate units; cron expressions are not run locally.
pub fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
Parameters:
  Origins:
    Type: String
  Concurrency:
    Type: Number
    Default: 3
  Reserve:
    Type: String
    Default: "off"
Conditions:
  HasOrigins: !Not [!Equals [!Ref Origins, ""]]
  Reserving: !Equals [!Ref Reserve, "on"]
Mappings:
  Reservation:
    Above:
      List: "1,2,3,4,5"
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        JOBS_URL: !Ref Jobs
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration: !If
        - HasOrigins
        - AllowOrigins: !Split [",", !Join ["", !Split [" ", !Ref Origins]]]
          AllowMethods: [GET, POST]
          AllowHeaders: [authorization]
          AllowCredentials: true
          MaxAge: 600
        - !Ref AWS::NoValue
  GetFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: thing-get
    Properties:
      Events:
        Get:
          Type: HttpApi
          Properties:
            Method: get
            Path: /things/{id}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: worker
    Properties:
      Timeout: 60
      ReservedConcurrentExecutions: !If
        - Reserving
        - !Select [!Ref Concurrency, !Split [",", !FindInMap [Reservation, Above, List]]]
        - !Ref AWS::NoValue
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 4
            ScalingConfig:
              MaximumConcurrency: !Ref Concurrency
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(2 hours)
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        maxReceiveCount: 7
"#;

    #[test]
    fn reads_routes_queues_schedules_cors_and_timeouts_through_short_tags() {
        let params = BTreeMap::from([(
            "Origins".to_owned(),
            " https://a.example.com , http://localhost:3000".to_owned(),
        )]);
        let t = Template::parse(SAMPLE, &params).unwrap();
        assert_eq!(
            t.routes,
            vec![Route {
                method: "GET".into(),
                path: "/things/{id}".into(),
                function: "thing-get".into()
            }]
        );
        assert_eq!(
            t.queues,
            vec![QueueSource {
                function: "worker".into(),
                queue: "Jobs".into(),
                url_variables: vec!["JOBS_URL".into()],
                batch_size: 4,
                max_concurrency: Some(3),
                max_receive_count: 7,
            }]
        );
        assert_eq!(t.schedules[0].every, Duration::from_secs(7200));
        let cors = t.cors.clone().unwrap();
        assert_eq!(
            cors.allow_origins,
            vec!["https://a.example.com", "http://localhost:3000"]
        );
        assert!(cors.allow_credentials);
        assert_eq!(cors.max_age, Some(600));
        assert_eq!(t.timeout("worker"), Some(Duration::from_secs(60)));
        assert_eq!(t.timeout("thing-get"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn reserved_concurrency_is_read_through_if_select_split_and_find_in_map() {
        let mut params = BTreeMap::from([("Origins".to_owned(), String::new())]);
        assert!(
            Template::parse(SAMPLE, &params)
                .unwrap()
                .reserved_concurrency
                .is_empty()
        );
        params.insert("Reserve".to_owned(), "on".to_owned());
        let t = Template::parse(SAMPLE, &params).unwrap();
        assert_eq!(t.reserved_concurrency["worker"], 4);
        params.insert("Concurrency".to_owned(), "9".to_owned());
        let err = Template::parse(SAMPLE, &params).unwrap_err();
        assert!(err.contains("no element 9"), "{err}");
    }

    #[test]
    fn a_false_condition_leaves_cors_unconfigured() {
        let params = BTreeMap::from([("Origins".to_owned(), String::new())]);
        assert_eq!(Template::parse(SAMPLE, &params).unwrap().cors, None);
    }

    #[test]
    fn a_parameter_without_a_value_is_an_error_that_names_it() {
        let err = Template::parse(SAMPLE, &BTreeMap::new()).unwrap_err();
        assert!(err.contains("Origins"), "{err}");
    }

    #[test]
    fn rates_in_every_unit_and_nothing_else() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(1 day)"), Some(Duration::from_secs(86_400)));
        assert_eq!(rate("cron(0 * * * ? *)"), None);
        assert_eq!(rate("rate(0 minutes)"), None);
    }
}
